// Package testenv is the one place tests get their services from.
//
// PostgreSQL, in order: HOOKSTREAM_TEST_DATABASE_URL; else testcontainers-go
// (postgres:17-alpine) when a Docker engine answers; else a private server
// from the machine's PostgreSQL binaries (internal/devstack). The server is
// migrated once into a template database and every test gets its own clone.
//
// Kafka, in order: HOOKSTREAM_TEST_KAFKA_BROKERS; else testcontainers-go
// (apache/kafka, KRaft) when a Docker engine answers; else an in-process
// kfake broker. Every test gets its own topics.
//
// When CI is set, a service that cannot start fails the test; otherwise the
// test is skipped with the reason. Packages call Main from TestMain so that
// what was started is stopped when the test binary ends.
package testenv

// Package testenv is the one place tests get PostgreSQL and Kafka from
// (STYLE.md, item 7). Tests never start services themselves, so one switch
// (the environment) moves the whole suite between a laptop, Docker and CI.
//
// PostgreSQL (Postgres), the first that applies, once per test binary:
//
//  1. HOOKSTREAM_TEST_DATABASE_URL: an existing server. The role needs
//     CREATEDB; PostgreSQL 13 or newer (DROP DATABASE ... WITH (FORCE)).
//  2. testcontainers-go, postgres:17-alpine, when a Docker engine answers
//     (testcontainers' own discovery: DOCKER_HOST, Docker contexts,
//     ~/.testcontainers.properties, rootless sockets; asked once, briefly).
//  3. A private server from the machine's PostgreSQL binaries
//     (internal/devstack), in a temporary directory, without fsync.
//
// The server gets a template database, migrated once; every Postgres call
// clones it (CREATE DATABASE ... TEMPLATE, milliseconds) and drops the
// clone when the test ends, so tests run in parallel on databases of their
// own.
//
// Kafka (Kafka), the first that applies, once per test binary:
//
//  1. HOOKSTREAM_TEST_KAFKA_BROKERS: comma-separated seed brokers.
//  2. HOOKSTREAM_TEST_KAFKA=apache: real Apache Kafka, a 3-node KRaft
//     cluster started by scripts/kafka-cluster.sh in a temporary
//     directory (half a minute; the first run on a machine also resolves
//     Kafka with Maven). A watchdog process kills it and removes the
//     directory when Main ends, or when the test binary dies without
//     running it.
//  3. testcontainers-go, apache/kafka in KRaft single-node mode, when a
//     Docker engine answers.
//  4. An in-process kfake broker, in memory.
//
// Brokers are shared; Topics gives every test topics of its own, created
// by internal/topics with its defaults: on the 3-node cluster, three
// replicas and min.insync.replicas 2, like production.
//
// NewKafka, KafkaCluster and NewPostgres are different: services of one
// test, which it stops and starts (outage and restart tests), never the
// shared or external ones, because the test must control their lifetime.
// NewKafka is a broker that goes away and comes back with its data: an
// in-process kfake broker, or with HOOKSTREAM_TEST_KAFKA=apache a one-node
// Apache Kafka cluster of the test's own, killed and started again.
// NewPostgres is a devstack PostgreSQL. KafkaCluster is an Apache Kafka
// cluster whose nodes the test kills and restarts one at a time; it needs
// HOOKSTREAM_TEST_KAFKA=apache and skips the test without it.
//
// HOOKSTREAM_TEST_DOCKER=1 (make test-docker) requires step 2 for both:
// without a Docker engine the services fail to start instead of falling
// back.
//
// When a service cannot start, the test is skipped with the reason, or,
// when CI is set to anything, fails with it: a CI run must not go green by
// skipping. Everything here is safe for parallel tests.
//
// Packages call Main from TestMain, so that what was started is stopped
// when the tests end. A test binary that dies without that (a panic, a
// timeout, kill -9) still leaves nothing running: the devstack server has
// a watchdog, testcontainers' reaper removes containers, and kfake dies
// with the process.
package testenv

// Package devstack starts the services `hookstream dev` and the test
// fallback run on a developer's machine: an embedded Kafka-protocol broker
// (franz-go's kfake), persisted to a directory, and a private PostgreSQL
// server started from the machine's own PostgreSQL binaries.
//
// PostgreSQL refuses to run as root, so when this process is root the
// server runs as the unprivileged "postgres" user.
package devstack

// Package devstack starts the services that `hookstream dev` and the test
// fallback (internal/testenv) run on a developer's machine when no real
// Kafka or PostgreSQL is given:
//
//   - Kafka: franz-go's kfake, an in-process Kafka-protocol broker, with its
//     log persisted to a directory (StartKafka).
//   - PostgreSQL: a private server started with the machine's own initdb
//     and pg_ctl, its data, socket and log in one directory (StartPostgres).
//
// Both are for one machine only: they listen on loopback addresses.
// Loopback is no boundary on a machine that others share, so PostgreSQL
// takes connections only with its superuser's password, which is
// generated once and kept in the server's directory (mode 0600); a
// cluster an older version made to trust local connections is given a
// password at its next start. The broker has no authentication: what
// protects its data on disk is the data directory's mode (PrivateDir).
// Production and production-like runs use real servers
// (docker-compose.yml).
//
// A data directory belongs to one process at a time: a lock file in it
// (flock, released by the kernel when the owner dies, even by kill -9)
// makes a second owner fail with a clear error instead of corrupting it,
// and lets StartPostgres tell a server orphaned by a dead parent, which it
// restarts, from one owned by a live process, which it leaves alone.
//
// For tests, an Ephemeral PostgreSQL is cleaned up even when the test
// binary dies without running its cleanups: a watchdog process, holding a
// pipe from this one, stops the server and removes its files when the
// pipe closes.
//
// PostgreSQL refuses to run as root, so when this process is root the
// server and its tools run as the unprivileged system user "postgres", and
// the data directory is handed to that user (chown -R). When that user
// cannot reach a new data directory (a clone under /root), the files go
// under /var/tmp and the data directory becomes a link to them.
//
// The package is Unix-only (flock, process credentials).
package devstack

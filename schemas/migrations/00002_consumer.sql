-- +goose Up
-- Where each consumer group's partitions resume: the next offset to read.
-- Written after the records below it are durable, read on assignment
-- ("storing offsets outside Kafka"); Kafka's committed offsets are kept
-- for lag tools only.
CREATE TABLE consumer_offsets (
    group_id    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- A customer with an unresolved DEAD event: its later events are stored
-- PARKED (with payload) until the blocker is replayed or skipped.
CREATE TABLE parked_customers (
    customer_id       text        PRIMARY KEY,
    source            text        NOT NULL,
    blocking_event_id text        NOT NULL,
    since             timestamptz NOT NULL DEFAULT now()
);

-- Outbox of audit_log rows to publish to hookstream.audit. xid lets the
-- relay publish only rows of transactions older than every transaction
-- still running, so a row can never be skipped by one that committed
-- earlier with a higher seq.
CREATE TABLE audit_outbox (
    seq      bigint PRIMARY KEY REFERENCES audit_log (seq) ON DELETE CASCADE,
    xid      xid8   NOT NULL DEFAULT pg_current_xact_id()
);

-- +goose Down
DROP TABLE audit_outbox;
DROP TABLE parked_customers;
DROP TABLE consumer_offsets;

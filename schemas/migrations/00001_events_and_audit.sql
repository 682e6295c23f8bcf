-- +goose Up
-- events: one row per (source, event_id). The consumer owns the state
-- machine; the receiver only reads it (duplicate check).
CREATE TABLE events (
    source          text        NOT NULL,
    event_id        text        NOT NULL,
    customer_id     text        NOT NULL,
    event_type      text        NOT NULL DEFAULT '',
    status          text        NOT NULL
        CHECK (status IN ('PROCESSING', 'PROCESSED', 'FAILED', 'DEAD', 'PARKED')),
    attempts        integer     NOT NULL DEFAULT 0,
    kafka_partition integer,
    kafka_offset    bigint,
    last_error      text,
    -- kept only while a replay may need it (FAILED, DEAD, PARKED)
    payload         bytea,
    headers         jsonb,
    received_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX events_customer_status_idx ON events (customer_id, status);
CREATE INDEX events_status_updated_idx ON events (status, updated_at);

-- audit_log: append-only. seq gives commit order for the outbox relay;
-- audit_id is the identity shared with the hookstream.audit topic, unique so
-- that every copy between the two is idempotent. "partition" and "offset" of
-- the audit record are kafka_partition/kafka_offset here (OFFSET is reserved).
CREATE TABLE audit_log (
    seq             bigserial   PRIMARY KEY,
    audit_id        uuid        NOT NULL UNIQUE,
    schema_version  integer     NOT NULL DEFAULT 1,
    event_id        text,
    source          text,
    customer_id     text,
    event_type      text,
    action          text        NOT NULL
        CHECK (action IN ('ACCEPTED', 'REJECTED', 'DUPLICATE', 'RETRY_ACCEPTED',
                          'PROCESSING', 'PROCESSED', 'FAILED', 'RETRY_SCHEDULED',
                          'DEAD_LETTERED', 'PARKED', 'UNPARKED', 'REPLAYED')),
    reason          text,
    http_status     integer,
    attempt         integer,
    kafka_partition integer,
    kafka_offset    bigint,
    actor           text        NOT NULL CHECK (actor IN ('ingest', 'consumer', 'admin')),
    instance        text        NOT NULL,
    request_id      text,
    at              timestamptz NOT NULL,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_event_idx ON audit_log (source, event_id, seq);
CREATE INDEX audit_log_customer_idx ON audit_log (customer_id, seq);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE events;

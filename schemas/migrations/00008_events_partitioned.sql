-- +goose Up
-- events becomes a table partitioned by bucket, so that retention drops a
-- bucket's partition instead of deleting rows (docs/design.md,
-- "Retention"). A bucket is a period of time (a day by default): the
-- rows written while it was the current one (event_clock). Today's table
-- becomes bucket 0 as it is: migration 7 gave it the column, the key and
-- the CHECK that make the attach a catalogue change, and its indexes
-- become the partitions of the parent's equal ones.
--
-- (source, event_id) is no longer unique by an index: no PostgreSQL index
-- spans partitions. It stays unique because every transaction that writes
-- events holds the bucket lock shared (an advisory lock, see
-- docs/design.md) and looks the key up in every bucket before it inserts
-- into the current one; a new bucket becomes current only under the lock
-- held exclusively, so two writers of one key always insert into the same
-- partition, where its unique index makes the later one wait and fail.
-- The current bucket, and when each bucket became current: bucket b holds
-- the rows written from its opened_at to the next one's.
CREATE TABLE event_buckets (
    bucket    integer     PRIMARY KEY,
    opened_at timestamptz NOT NULL
);
CREATE TABLE event_clock (
    id     integer PRIMARY KEY CHECK (id = 1),
    bucket integer NOT NULL REFERENCES event_buckets (bucket)
);
INSERT INTO event_buckets (bucket, opened_at) SELECT 0, coalesce(min(created_at), now()) FROM events;
INSERT INTO event_clock (id, bucket) VALUES (1, 0);

-- The default of events.bucket, for a row written by hand: the current
-- bucket, with the bucket lock taken as the consumer takes it. The
-- consumer names the bucket itself, once per statement.
-- +goose StatementBegin
CREATE FUNCTION event_bucket() RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7525356009647404387);
    RETURN (SELECT bucket FROM event_clock);
END
$$;
-- +goose StatementEnd

ALTER TABLE events RENAME TO events_b0;
ALTER INDEX events_customer_status_idx RENAME TO events_b0_customer_status_idx;
ALTER INDEX events_status_updated_idx RENAME TO events_b0_status_updated_idx;
ALTER INDEX events_parked_idx RENAME TO events_b0_parked_idx;
ALTER TABLE events_b0 ALTER COLUMN bucket DROP DEFAULT;
-- The old primary key is redundant with events_b0_key (bucket is 0 on
-- every row): it goes, so that every partition has the same indexes.
ALTER TABLE events_b0 DROP CONSTRAINT events_pkey;

CREATE TABLE events (
    source          text        NOT NULL,
    event_id        text        NOT NULL,
    customer_id     text        NOT NULL,
    event_type      text        NOT NULL DEFAULT '',
    -- named as the partition's own: the attach matches constraints by name
    status          text        NOT NULL CONSTRAINT events_status_check
        CHECK (status IN ('PROCESSING', 'PROCESSED', 'FAILED', 'DEAD', 'PARKED')),
    attempts        integer     NOT NULL DEFAULT 0,
    kafka_partition integer,
    kafka_offset    bigint,
    last_error      text,
    payload         bytea,
    headers         jsonb,
    received_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    bucket          integer     NOT NULL DEFAULT event_bucket()
) PARTITION BY LIST (bucket);
CREATE UNIQUE INDEX events_key ON events (source, event_id, bucket);
CREATE INDEX events_customer_status_idx ON events (customer_id, status);
CREATE INDEX events_status_updated_idx ON events (status, updated_at);
CREATE INDEX events_parked_idx ON events (source, customer_id, kafka_partition, kafka_offset)
    WHERE status = 'PARKED';
ALTER TABLE events ATTACH PARTITION events_b0 FOR VALUES IN (0);


-- +goose Down
-- Every bucket's rows back into one table: a copy, as long as the table.
CREATE TABLE events_flat (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE events_flat ALTER COLUMN bucket SET DEFAULT 0;
INSERT INTO events_flat SELECT * FROM events;
UPDATE events_flat SET bucket = 0 WHERE bucket <> 0;
DROP TABLE events;
DROP FUNCTION event_bucket();
DROP TABLE event_clock;
DROP TABLE event_buckets;
ALTER TABLE events_flat RENAME TO events;
ALTER TABLE events ADD CONSTRAINT events_b0_bucket CHECK (bucket = 0);
ALTER TABLE events ADD PRIMARY KEY (source, event_id);
CREATE UNIQUE INDEX events_b0_key ON events (source, event_id, bucket);
CREATE INDEX events_customer_status_idx ON events (customer_id, status);
CREATE INDEX events_status_updated_idx ON events (status, updated_at);
CREATE INDEX events_parked_idx ON events (source, customer_id, kafka_partition, kafka_offset)
    WHERE status = 'PARKED';

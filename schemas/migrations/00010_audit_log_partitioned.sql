-- +goose Up
-- audit_log becomes a table partitioned by range of at, so that retention
-- drops a partition of old records instead of deleting rows
-- (docs/design.md, "Retention"). Today's table becomes the partition of
-- everything before T0 as it is: migration 9 gave it the key and the CHECK
-- that make the attach a catalogue change, and its indexes become the
-- partitions of the parent's equal ones. Partitions are UTC-midnight
-- aligned and named audit_log_pYYYYMMDD by their lower bound; the
-- retention rounds (internal/retention) create them ahead and drop them
-- behind. This migration makes [T0, T0 + 7 days) and the week after.
--
-- (audit_id) alone is no longer unique by an index: no PostgreSQL index
-- spans partitions. No lock is needed to keep it unique: every writer of
-- a given record writes the same (audit_id, at) (the consumer's copy of
-- the receiver's record, the sink's copy of the topic's, the relay's
-- published rows copied back), so ON CONFLICT (audit_id, at) finds it in
-- the one partition at routes to.
--
-- The deferred constraint trigger of migration 5 is made on the parent:
-- PostgreSQL 15 clones it to every partition, those attached or created
-- later included.
LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE;
DROP TRIGGER audit_log_commit ON audit_log;
ALTER TABLE audit_log RENAME TO audit_log_p0;
ALTER INDEX audit_log_event_idx RENAME TO audit_log_p0_event_idx;
ALTER INDEX audit_log_relay_idx RENAME TO audit_log_p0_relay_idx;
ALTER INDEX audit_log_signed_idx RENAME TO audit_log_p0_signed_idx;
-- The old key (audit_id) goes; the index of migration 9 becomes the
-- partition's primary key (its columns are NOT NULL: no scan).
ALTER TABLE audit_log_p0 DROP CONSTRAINT audit_log_pkey;
ALTER TABLE audit_log_p0 ADD CONSTRAINT audit_log_p0_pkey PRIMARY KEY USING INDEX audit_log_p0_key;

CREATE TABLE audit_log (
    seq             bigint      NOT NULL DEFAULT nextval('audit_log_seq_seq'),
    audit_id        uuid        NOT NULL,
    schema_version  integer     NOT NULL DEFAULT 1,
    event_id        text,
    source          text,
    customer_id     text,
    event_type      text,
    -- named as the partition's own: the attach matches constraints by name
    action          text        NOT NULL CONSTRAINT audit_log_action_check
        CHECK (action IN ('ACCEPTED', 'REJECTED', 'DUPLICATE', 'RETRY_ACCEPTED',
                          'PROCESSING', 'PROCESSED', 'FAILED', 'RETRY_SCHEDULED',
                          'DEAD_LETTERED', 'PARKED', 'UNPARKED', 'REPLAYED')),
    reason          text,
    http_status     integer,
    attempt         integer,
    kafka_partition integer,
    kafka_offset    bigint,
    actor           text        NOT NULL CONSTRAINT audit_log_actor_check
        CHECK (actor IN ('ingest', 'consumer', 'admin')),
    instance        text        NOT NULL,
    request_id      text,
    at              timestamptz NOT NULL,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    xid             xid8        DEFAULT pg_current_xact_id(),
    CONSTRAINT audit_log_pkey PRIMARY KEY (audit_id, at)
) PARTITION BY RANGE (at);
-- seq's sequence belongs to the parent: dropping the old partition must
-- not take it along.
ALTER SEQUENCE audit_log_seq_seq OWNED BY audit_log.seq;
CREATE INDEX audit_log_event_idx ON audit_log (source, event_id, seq);
CREATE INDEX audit_log_relay_idx ON audit_log (xid, seq) WHERE xid IS NOT NULL;
CREATE INDEX audit_log_signed_idx ON audit_log (source, (detail->>'signed_sha256'), at) INCLUDE (event_id)
    WHERE detail ? 'signed_sha256';
CREATE CONSTRAINT TRIGGER audit_log_commit
    AFTER INSERT ON audit_log
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (audit_log_first_of_xact(NEW.xid))
    EXECUTE FUNCTION audit_log_commit();

-- T0 is the bound of migration 9's CHECK; the CHECK makes the attach
-- skip the scan, and goes once the partition bound replaces it.
-- +goose StatementBegin
DO $$
DECLARE
    t0 timestamptz;
    lo timestamptz;
BEGIN
    SELECT substring(pg_get_constraintdef(oid) FROM '''([^'']+)''')::timestamptz INTO STRICT t0
    FROM pg_constraint WHERE conrelid = 'audit_log_p0'::regclass AND conname = 'audit_log_p0_at';
    EXECUTE format('ALTER TABLE audit_log ATTACH PARTITION audit_log_p0 FOR VALUES FROM (MINVALUE) TO (%L)', t0);
    FOR i IN 0..1 LOOP
        lo := t0 + make_interval(days => 7 * i);
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
                       'audit_log_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD'), lo, lo + interval '7 days');
    END LOOP;
END
$$;
-- +goose StatementEnd
ALTER TABLE audit_log_p0 DROP CONSTRAINT audit_log_p0_at;

-- +goose Down
-- Every partition's rows back into one table: a copy, as long as the
-- table. Its key is audit_id again, with migration 9's index beside it.
-- Writers wait first (readers go on): a row committed after the copy's
-- snapshot would go with the partitioned table. One row per audit_id, the
-- first written: the partitioned table lets one audit_id have two times
-- (a receiver's decision the consumer redated and wrote again,
-- docs/design.md, "The audit log").
LOCK TABLE audit_log IN EXCLUSIVE MODE;
CREATE TABLE audit_log_flat (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO audit_log_flat SELECT DISTINCT ON (audit_id) * FROM audit_log ORDER BY audit_id, seq;
ALTER SEQUENCE audit_log_seq_seq OWNED BY audit_log_flat.seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_flat RENAME TO audit_log;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_pkey PRIMARY KEY (audit_id);
CREATE UNIQUE INDEX audit_log_p0_key ON audit_log (audit_id, at);
CREATE INDEX audit_log_event_idx ON audit_log (source, event_id, seq);
CREATE INDEX audit_log_relay_idx ON audit_log (xid, seq) WHERE xid IS NOT NULL;
CREATE INDEX audit_log_signed_idx ON audit_log (source, (detail->>'signed_sha256'), at) INCLUDE (event_id)
    WHERE detail ? 'signed_sha256';
CREATE CONSTRAINT TRIGGER audit_log_commit
    AFTER INSERT ON audit_log
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (audit_log_first_of_xact(NEW.xid))
    EXECUTE FUNCTION audit_log_commit();

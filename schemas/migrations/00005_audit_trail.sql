-- +goose Up
-- The relay publishes audit_log rows in the order their transactions
-- committed. Transaction ids (the (xid, seq) cursor of migration 3) are
-- taken when a transaction first writes, not when it commits: a
-- transaction that took its id early and committed after a later one (a
-- provider's re-send racing an admin replay of the same event) was
-- published first, and the compacted topic could keep the older state as
-- the event's last record.
--
-- audit_clock is a one-row counter that every transaction writing audit
-- rows increments once, at COMMIT (a deferred constraint trigger fires
-- after the transaction's last statement and before its commit record),
-- recording (commit_seq, xid) in audit_commits. The row lock on the clock
-- is held until the transaction has ended and is visible to everyone, so:
--   * commit_seq follows commit order: the next transaction can only take
--     the clock once this one has committed;
--   * commit_seq has no gaps: a transaction that fails after taking it
--     rolls the increment back, and the next one reuses the number;
--   * no snapshot sees commit_seq n without every number below n.
-- The relay reads audit_commits from its cursor and needs no snapshot
-- horizon. The price is that the commits of audit-writing transactions
-- are serialized from the trigger to the end of the commit (the WAL flush
-- included); docs/design.md, "Audit trail", says why that was chosen.
-- Rows the sink copies from the topic have no xid and do not count.
CREATE TABLE audit_clock (
    id integer PRIMARY KEY CHECK (id = 1),
    n  bigint  NOT NULL
);

CREATE TABLE audit_commits (
    commit_seq bigint PRIMARY KEY,
    xid        xid8   NOT NULL UNIQUE
);

-- No writer may commit between the carry-over below and the trigger: the
-- lock waits for the transactions writing audit_log and keeps new ones
-- out until this migration commits.
LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE;

-- Rows not yet published keep the order the old relay would have given
-- them (their commit order is not known any more): a commit_seq per xid,
-- in xid order.
INSERT INTO audit_commits (commit_seq, xid)
SELECT row_number() OVER (ORDER BY t.xid), t.xid
FROM (SELECT DISTINCT a.xid FROM audit_log a, audit_relay r
      WHERE a.xid IS NOT NULL AND (a.xid, a.seq) > (r.xid, r.seq)) t;
INSERT INTO audit_clock (id, n) SELECT 1, count(*) FROM audit_commits;

-- The relay's cursor becomes (commit_seq, seq): the last row published.
-- A transaction the old relay had published in part is commit 1, and its
-- published rows stay behind the cursor. epoch fences relays: each relay
-- that takes over increments it, and a relay moves the cursor only while
-- the epoch is still its own.
ALTER TABLE audit_relay ADD COLUMN commit_seq bigint NOT NULL DEFAULT 0,
                        ADD COLUMN epoch      bigint NOT NULL DEFAULT 0;
UPDATE audit_relay r SET commit_seq = 1
WHERE EXISTS (SELECT 1 FROM audit_commits c WHERE c.commit_seq = 1 AND c.xid = r.xid);
UPDATE audit_relay SET seq = 0 WHERE commit_seq = 0;
ALTER TABLE audit_relay DROP COLUMN xid;

-- Marks the transaction's first row with an xid, in a transaction-local
-- setting, so that the deferred queue holds one event per transaction
-- instead of one per row: the consumer writes thousands of rows in one
-- transaction, and every queued event would run while this transaction
-- holds the clock. The setting is undone with the (sub)transaction that
-- set it, like the queued event.
-- +goose StatementBegin
CREATE FUNCTION audit_log_first_of_xact(row_xid xid8) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
SELECT CASE WHEN row_xid IS NULL THEN false
            WHEN current_setting('hookstream.audit_clock', true) = 'queued' THEN false
            ELSE set_config('hookstream.audit_clock', 'queued', true) = 'queued' END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION audit_log_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    UPDATE audit_clock SET n = n + 1 WHERE id = 1 RETURNING n INTO next_seq;
    INSERT INTO audit_commits (commit_seq, xid) VALUES (next_seq, pg_current_xact_id());
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER audit_log_commit
    AFTER INSERT ON audit_log
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (audit_log_first_of_xact(NEW.xid))
    EXECUTE FUNCTION audit_log_commit();

-- Records of the audit topic the sink could not copy into audit_log (not
-- an audit record's JSON, or refused by the table: an audit_id that is
-- not a UUID, an action this version does not know), kept byte for byte
-- with the reason ("decode" or the SQLSTATE) and the error, so the sink
-- can go on with the next record. One row per topic record.
CREATE TABLE audit_quarantine (
    id              bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    record_key      bytea,
    record_value    bytea,
    headers         jsonb       NOT NULL DEFAULT '[]'::jsonb,
    reason          text        NOT NULL,
    message         text        NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);

-- +goose Down
DROP TABLE audit_quarantine;
-- The old cursor goes just before the first row not yet published, in
-- (xid, seq) order: rows after it that were published already go out
-- again (the topic is at-least-once), none is skipped.
LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE;
DROP TRIGGER audit_log_commit ON audit_log;
DROP FUNCTION audit_log_commit();
DROP FUNCTION audit_log_first_of_xact(xid8);
ALTER TABLE audit_relay ADD COLUMN xid xid8;
UPDATE audit_relay r SET (xid, seq) = (
    SELECT u.xid, u.seq FROM (
        (SELECT a.xid, a.seq - 1 AS seq, 0 AS pref
         FROM audit_log a JOIN audit_commits c ON c.xid = a.xid
         WHERE (c.commit_seq, a.seq) > (r.commit_seq, r.seq)
         ORDER BY a.xid, a.seq LIMIT 1)
        UNION ALL
        (SELECT a.xid, a.seq, 1 FROM audit_log a WHERE a.xid IS NOT NULL ORDER BY a.xid DESC, a.seq DESC LIMIT 1)
        UNION ALL
        SELECT '0'::xid8, 0, 2
    ) u ORDER BY u.pref LIMIT 1);
ALTER TABLE audit_relay ALTER COLUMN xid SET NOT NULL;
ALTER TABLE audit_relay DROP COLUMN commit_seq, DROP COLUMN epoch;
DROP TABLE audit_commits;
DROP TABLE audit_clock;

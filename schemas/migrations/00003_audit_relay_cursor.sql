-- +goose Up
-- The relay reads audit_log itself instead of an outbox table: a row to
-- publish carries the id of the transaction that wrote it (xid), and the
-- relay keeps a cursor (xid, seq). Every transaction with an id below the
-- oldest one still running (pg_snapshot_xmin) has ended, and any
-- transaction that will write later gets a higher id, so publishing rows
-- below that horizon in (xid, seq) order never skips one. A decision
-- writes one row instead of two (audit_log + audit_outbox), and nothing is
-- deleted afterwards. Rows the sink copies from the topic (the
-- receiver's, already published) have no xid.
ALTER TABLE audit_log ADD COLUMN xid xid8;
ALTER TABLE audit_log ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
-- Rows still queued keep their place: they take this migration's id.
UPDATE audit_log SET xid = pg_current_xact_id() WHERE seq IN (SELECT seq FROM audit_outbox);
CREATE INDEX audit_log_relay_idx ON audit_log (xid, seq) WHERE xid IS NOT NULL;

-- Where the relay is: the last (xid, seq) the broker acknowledged.
CREATE TABLE audit_relay (
    id         integer     PRIMARY KEY CHECK (id = 1),
    xid        xid8        NOT NULL,
    seq        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_relay (id, xid, seq) VALUES (1, '0', 0);

DROP TABLE audit_outbox;

-- audit_id is the key (the identity shared with the topic); seq stays a
-- unique, increasing column, ordered through the indexes that use it, and
-- no longer needs an index of its own now that nothing joins on it.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey;
ALTER TABLE audit_log DROP CONSTRAINT audit_log_audit_id_key;
ALTER TABLE audit_log ADD PRIMARY KEY (audit_id);

-- No query reads audit_log by customer (audit tail --customer reads the
-- topic); the index cost two insertions per processed event.
DROP INDEX audit_log_customer_idx;

-- +goose Down
CREATE INDEX audit_log_customer_idx ON audit_log (customer_id, seq);
ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_audit_id_key UNIQUE (audit_id);
ALTER TABLE audit_log ADD PRIMARY KEY (seq);
CREATE TABLE audit_outbox (
    seq      bigint PRIMARY KEY REFERENCES audit_log (seq) ON DELETE CASCADE,
    xid      xid8   NOT NULL DEFAULT pg_current_xact_id()
);
INSERT INTO audit_outbox (seq, xid)
SELECT a.seq, a.xid FROM audit_log a, audit_relay r
WHERE a.xid IS NOT NULL AND (a.xid, a.seq) > (r.xid, r.seq);
DROP TABLE audit_relay;
DROP INDEX audit_log_relay_idx;
ALTER TABLE audit_log DROP COLUMN xid;

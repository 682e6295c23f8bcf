-- +goose NO TRANSACTION
-- +goose Up
-- The first half of partitioning audit_log by time (migration 10, and
-- docs/design.md "Retention"), done here without blocking the table: the
-- unique index the partitioned key (audit_id, at) needs, and a CHECK that
-- today's rows are all before T0, the lower bound of the first partition
-- of the new table: migration 10 attaches this table as the partition of
-- everything before T0 without scanning it. T0 is the UTC midnight after
-- next: far enough ahead that migration 10 runs before it (writes at or
-- after T0 are refused until it has run), and a partition boundary. The
-- index is built CONCURRENTLY and the CHECK validated under a lock that
-- lets writers on. Each step can run again after a failure: an index a
-- failed build left invalid is dropped first.
DROP INDEX CONCURRENTLY IF EXISTS audit_log_p0_key;
CREATE UNIQUE INDEX CONCURRENTLY audit_log_p0_key ON audit_log (audit_id, at);
ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_p0_at;
-- +goose StatementBegin
DO $$
BEGIN
    EXECUTE format('ALTER TABLE audit_log ADD CONSTRAINT audit_log_p0_at CHECK (at < %L::timestamptz) NOT VALID',
                   to_char(date_trunc('day', now() AT TIME ZONE 'UTC') + interval '2 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
END
$$;
-- +goose StatementEnd
ALTER TABLE audit_log VALIDATE CONSTRAINT audit_log_p0_at;

-- +goose Down
ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_p0_at;
DROP INDEX CONCURRENTLY IF EXISTS audit_log_p0_key;

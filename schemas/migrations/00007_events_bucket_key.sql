-- +goose NO TRANSACTION
-- +goose Up
-- The first half of partitioning events by bucket (migration 8, and
-- docs/design.md "Retention"), done here without blocking the table:
-- today's rows become bucket 0. Adding a column with a constant default
-- rewrites nothing; the unique index the partitioned key needs and the
-- CHECK that lets migration 8 attach the table without scanning it are
-- built CONCURRENTLY and validated under a lock that lets writers on.
-- Each step can run again after a failure: an index a failed build left
-- invalid is dropped first.
ALTER TABLE events ADD COLUMN IF NOT EXISTS bucket integer NOT NULL DEFAULT 0;
DROP INDEX CONCURRENTLY IF EXISTS events_b0_key;
CREATE UNIQUE INDEX CONCURRENTLY events_b0_key ON events (source, event_id, bucket);
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_b0_bucket;
ALTER TABLE events ADD CONSTRAINT events_b0_bucket CHECK (bucket = 0) NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_b0_bucket;

-- +goose Down
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_b0_bucket;
DROP INDEX CONCURRENTLY IF EXISTS events_b0_key;
ALTER TABLE events DROP COLUMN IF EXISTS bucket;

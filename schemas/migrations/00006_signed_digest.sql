-- +goose NO TRANSACTION
-- +goose Up
-- Replays under a new id. GitHub, Shopify and hmac-sha256 sign the body
-- alone, and a source of theirs reads its event id from a header the
-- signature does not cover: a captured delivery verifies under any id. The
-- receiver puts the SHA-256 of what the signature covers in the detail of
-- such an event's ACCEPTED record (detail.signed_sha256), which the
-- consumer writes here, and looks the digest up under other ids of the
-- source (within its window) before accepting. No table of its own: the
-- rows exist already, and this partial index holds only the records that
-- carry a digest, so it grows with those sources' accepted events as the
-- events table does. CONCURRENTLY: audit_log is large and written all the
-- time, and a plain CREATE INDEX would block its writers for the build.
-- A build that failed leaves an invalid index (and the migration
-- unrecorded): the next run drops it first.
DROP INDEX CONCURRENTLY IF EXISTS audit_log_signed_idx;
CREATE INDEX CONCURRENTLY audit_log_signed_idx
    ON audit_log (source, (detail->>'signed_sha256'), at) INCLUDE (event_id)
    WHERE detail ? 'signed_sha256';

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS audit_log_signed_idx;

-- The data of TestNoLaterRowSpeed (docs/design.md, "A round's budget"),
-- for a freshly migrated database (hookstream migrate), 4.8 million rows:
--   psql "$URL" -v ON_ERROR_STOP=1 -f internal/retention/testdata/tombstone-speed.sql
-- audit_log_p0 (the partition that expires): 200,000 event keys, 3 rows
-- each, in 3 sources, event ids in an order unrelated to time. Then 7
-- weekly partitions after it of 600,000 rows each (the migration's two,
-- and five more), 200,000 keys of 3 rows: in each of the first three,
-- 20,000 of audit_log_p0's keys (i % 10 = j) and 180,000 of their own;
-- in each of the last four, 2,000 of its keys (i % 100 = j) and 198,000
-- of their own. 68,000 of audit_log_p0's keys have a later row.
SELECT substring(pg_get_expr(relpartbound, oid) FROM 'TO \(''([^'']+)''\)')::timestamptz AS t0
FROM pg_class WHERE relname = 'audit_log_p0' \gset
DO $$
DECLARE
    t0 timestamptz := substring(pg_get_expr(relpartbound, oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
        FROM pg_class WHERE relname = 'audit_log_p0';
    lo timestamptz;
BEGIN
    FOR w IN 2..6 LOOP
        lo := t0 + w * interval '7 days';
        EXECUTE format('CREATE TABLE %I (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       'audit_log_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD'));
        EXECUTE format('ALTER TABLE audit_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       'audit_log_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD'), lo, lo + interval '7 days');
    END LOOP;
END $$;
INSERT INTO audit_log (audit_id, source, event_id, request_id, action, actor, instance, at, xid)
SELECT gen_random_uuid(), (ARRAY['stripe','shopify','github'])[1 + i % 3], 'evt_' || md5('p0' || i), 'req-' || i,
       'ACCEPTED', 'ingest', 'bench', :'t0'::timestamptz - interval '1 day' + (i || ' ms')::interval + (r || ' s')::interval, NULL
FROM generate_series(1, 200000) i, generate_series(0, 2) r;
-- k: the key of audit_log_p0 a later row shares, or NULL for one of its own.
INSERT INTO audit_log (audit_id, source, event_id, request_id, action, actor, instance, at, xid)
SELECT gen_random_uuid(), (ARRAY['stripe','shopify','github'])[1 + coalesce(k, i) % 3],
       CASE WHEN k IS NULL THEN 'evt_' || md5('p' || j || '-' || i) ELSE 'evt_' || md5('p0' || k) END,
       'req-' || j || '-' || i, 'PROCESSED', 'consumer', 'bench',
       :'t0'::timestamptz + (j - 1) * interval '7 days' + (i || ' ms')::interval + (r || ' s')::interval, NULL
FROM generate_series(1, 7) j, generate_series(1, 200000) i, generate_series(0, 2) r,
     LATERAL (SELECT CASE WHEN j <= 3 AND i <= 20000 THEN i * 10 - 10 + j
                          WHEN j > 3 AND i <= 2000 THEN i * 100 - 100 + j END AS k) s;
VACUUM ANALYZE audit_log;

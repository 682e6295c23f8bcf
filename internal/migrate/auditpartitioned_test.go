package migrate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/migrate"
)

// TestAuditLogPartitionedOnPopulatedTable: migrations 9 and 10 turn an
// audit_log that holds rows into the table partitioned by at. Every row
// is kept, in the partition of everything before T0 (the UTC midnight
// after next), whose indexes are the old table's, not rebuilt; two weeks
// of partitions follow it; (audit_id, at) is the key; a row written after
// the migration goes where at routes it, gets its seq and is counted by
// the commit clock; the readers' queries use indexes; and the migration
// rolls back and applies again.
func TestAuditLogPartitionedOnPopulatedTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 8)
	_, err := conn.Exec(ctx, `INSERT INTO audit_log (audit_id, event_id, source, customer_id, action, actor, instance, at, detail)
SELECT gen_random_uuid(), 'e' || (i / 3), 'stripe', 'c', (ARRAY['ACCEPTED','PROCESSING','PROCESSED'])[1 + i % 3], 'consumer', 'old',
       now() - interval '30 days' + i * interval '1 second',
       CASE WHEN i % 3 = 0 THEN jsonb_build_object('signed_sha256', 'd' || i) ELSE '{}'::jsonb END
FROM generate_series(1, 6000) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	var maxSeq int64
	if err := conn.QueryRow(ctx, `SELECT max(seq) FROM audit_log`).Scan(&maxSeq); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if _, err := migrate.UpTo(ctx, dbURL, 9); err != nil {
			t.Fatal(err)
		}
		// The files of the old table's indexes, before the attach, but
		// for its old key (audit_id), which goes.
		before := indexFiles(t, conn, "audit_log", "audit_log_pkey")
		if _, err := migrate.Up(ctx, dbURL); err != nil {
			t.Fatal(err)
		}
		var kind string
		var rows, inP0 int
		if err := conn.QueryRow(ctx, `SELECT c.relkind::text, (SELECT count(*) FROM audit_log), (SELECT count(*) FROM audit_log_p0)
FROM pg_class c WHERE c.relname = 'audit_log'`).Scan(&kind, &rows, &inP0); err != nil {
			t.Fatal(err)
		}
		if kind != "p" || rows != 6000+round || inP0 != 6000+round {
			t.Fatalf("audit_log: kind %q, %d rows, %d in audit_log_p0; want a partitioned table with %d rows, all in audit_log_p0", kind, rows, inP0, 6000+round)
		}
		after := indexFiles(t, conn, "audit_log_p0", "")
		if len(after) != 4 {
			t.Errorf("audit_log_p0 has indexes %v, want the key and the three others", after)
		}
		for _, f := range before {
			found := false
			for _, g := range after {
				found = found || f == g
			}
			if !found {
				t.Errorf("index file %d of the old table is gone: the attach rebuilt an index (before %v, after %v)", f, before, after)
			}
		}
		// T0 is the UTC midnight after next as of migration 9 (which ran
		// before now, perhaps on the other side of a midnight).
		var t0 time.Time
		if err := conn.QueryRow(ctx, `SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
FROM pg_class c WHERE c.relname = 'audit_log_p0'`).Scan(&t0); err != nil {
			t.Fatal(err)
		}
		t0 = t0.UTC()
		if now := time.Now().UTC(); t0 != t0.Truncate(24*time.Hour) || !t0.After(now.Add(24*time.Hour-time.Minute)) || t0.After(now.Add(48*time.Hour)) {
			t.Fatalf("T0 %v: want the UTC midnight after next (now %v)", t0, now)
		}
		want := []string{
			"audit_log_p0 FOR VALUES FROM (MINVALUE) TO ('" + t0.Format("2006-01-02") + " 00:00:00+00')",
			"audit_log_p" + t0.Format("20060102") + " FOR VALUES FROM ('" + t0.Format("2006-01-02") + " 00:00:00+00') TO ('" + t0.AddDate(0, 0, 7).Format("2006-01-02") + " 00:00:00+00')",
			"audit_log_p" + t0.AddDate(0, 0, 7).Format("20060102") + " FOR VALUES FROM ('" + t0.AddDate(0, 0, 7).Format("2006-01-02") + " 00:00:00+00') TO ('" + t0.AddDate(0, 0, 14).Format("2006-01-02") + " 00:00:00+00')",
		}
		if got := auditPartitions(t, conn); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("partitions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		// A new row, in a transaction as the consumer's: seq goes on, the
		// commit clock counts the transaction, and the key refuses a
		// second (audit_id, at) but not the same audit_id at another time.
		id := uuid.New()
		var seq int64
		var part string
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `INSERT INTO audit_log (audit_id, event_id, source, customer_id, action, actor, instance, at)
VALUES ($1, 'new', 'stripe', 'c', 'PROCESSED', 'consumer', 'new', $2) RETURNING seq, tableoid::regclass::text`, id, t0.Add(time.Hour)).Scan(&seq, &part)
		}); err != nil {
			t.Fatal(err)
		}
		if seq <= maxSeq || part != "audit_log_p"+t0.Format("20060102") {
			t.Errorf("new row: seq %d (the old rows' highest %d), in %s", seq, maxSeq, part)
		}
		maxSeq = seq
		var counted bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_commits c JOIN audit_log a ON a.xid = c.xid WHERE a.audit_id = $1)`, id).Scan(&counted); err != nil || !counted {
			t.Errorf("the new row's transaction is not in audit_commits (%v): the commit trigger did not fire", err)
		}
		_, err = conn.Exec(ctx, `INSERT INTO audit_log (audit_id, action, actor, instance, at) VALUES ($1, 'PROCESSED', 'consumer', 'x', $2)`, id, t0.Add(time.Hour))
		if err == nil || !strings.Contains(err.Error(), "23505") {
			t.Errorf("a second row of the same (audit_id, at): %v, want a unique violation", err)
		}
		if _, err := conn.Exec(ctx, `DELETE FROM audit_log WHERE audit_id = $1`, id); err != nil {
			t.Fatal(err)
		}
		// One row per round stays in audit_log_p0, written after the
		// migration, for the next round to carry.
		if _, err := conn.Exec(ctx, `INSERT INTO audit_log (audit_id, action, actor, instance, at) VALUES ($1, 'PROCESSED', 'consumer', 'x', now())`, uuid.New()); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`SELECT * FROM audit_log WHERE source = 'stripe' AND event_id = 'e7' ORDER BY at, seq`,
			`SELECT * FROM audit_log WHERE xid = '1234' AND seq > 0`,
			`SELECT event_id FROM audit_log WHERE source = 'stripe' AND detail ? 'signed_sha256' AND (detail->>'signed_sha256') = 'd9' AND at > now() - interval '1 day'`,
			`SELECT 1 FROM audit_log WHERE audit_id = '` + id.String() + `' AND at = '` + t0.Format(time.RFC3339) + `'`,
		} {
			plan := explain(t, conn, q)
			if strings.Contains(plan, "Seq Scan") {
				t.Errorf("%s scans:\n%s", q, plan)
			}
		}
		if _, err := migrate.DownTo(ctx, dbURL, 8); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT c.relkind::text, (SELECT count(*) FROM audit_log) FROM pg_class c WHERE c.relname = 'audit_log'`).Scan(&kind, &n); err != nil || kind != "r" || n != 6001+round {
			t.Fatalf("after the rollback: audit_log kind %q with %d rows (%v), want a plain table of %d", kind, n, err, 6001+round)
		}
		var next int64
		if err := conn.QueryRow(ctx, `SELECT nextval('audit_log_seq_seq')`).Scan(&next); err != nil || next <= maxSeq {
			t.Fatalf("after the rollback, seq's sequence gives %d (%v), want more than %d", next, err, maxSeq)
		}
	}
}

// indexFiles are the relfilenodes of table's indexes but except.
func indexFiles(t *testing.T, conn *pgx.Conn, table, except string) []int64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT c.relfilenode::bigint FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = $1::regclass AND c.relname <> $2 ORDER BY 1`, table, except)
	if err != nil {
		t.Fatal(err)
	}
	files, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// auditPartitions are audit_log's partitions with their bounds, in order.
func auditPartitions(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	if _, err := conn.Exec(context.Background(), `SET TimeZone = 'UTC'`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(context.Background(), `SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_log'::regclass ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

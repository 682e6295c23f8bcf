package migrate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/migrate"
)

// TestEventsPartitionedOnPopulatedTable: migrations 7 and 8 turn an
// events table that holds rows into the partitioned one. Every row is
// kept, in bucket 0; the key stays unique in the bucket; look-ups by key
// and the consumer's parked-events query use indexes, not scans; and the
// migration can be rolled back and applied again.
func TestEventsPartitionedOnPopulatedTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 6)
	_, err := conn.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, status, kafka_partition, kafka_offset, payload, created_at)
SELECT 'stripe', 'e' || i, 'c' || (i % 50), (ARRAY['PROCESSED','FAILED','DEAD','PARKED','PROCESSING'])[1 + i % 5], 0, i,
       CASE WHEN i % 5 > 0 THEN '{}'::bytea END, now() - interval '3 days'
FROM generate_series(1, 5000) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := migrate.Up(ctx, dbURL); err != nil {
			t.Fatal(err)
		}
		var kind string
		var rows, bucket0 int
		if err := conn.QueryRow(ctx, `SELECT c.relkind::text, (SELECT count(*) FROM events), (SELECT count(*) FROM events_b0 WHERE bucket = 0)
FROM pg_class c WHERE c.relname = 'events'`).Scan(&kind, &rows, &bucket0); err != nil {
			t.Fatal(err)
		}
		if kind != "p" || rows != 5000 || bucket0 != 5000 {
			t.Fatalf("events: kind %q, %d rows, %d in bucket 0; want a partitioned table with 5000 rows in bucket 0", kind, rows, bucket0)
		}
		var current int
		var opened bool
		if err := conn.QueryRow(ctx, `SELECT c.bucket, b.opened_at < now() - interval '2 days'
FROM event_clock c JOIN event_buckets b USING (bucket)`).Scan(&current, &opened); err != nil || current != 0 || !opened {
			t.Errorf("event_clock: bucket %d, opened with the oldest row %v, %v", current, opened, err)
		}
		_, err = conn.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, status, bucket) VALUES ('stripe', 'e7', 'c', 'PROCESSED', 0)`)
		if err == nil || !strings.Contains(err.Error(), "events_b0_key") {
			t.Errorf("a second row of stripe/e7 in bucket 0: %v, want a unique violation of events_b0_key", err)
		}
		for _, q := range []string{
			`SELECT status FROM events WHERE source = 'stripe' AND event_id = 'e7'`,
			`SELECT event_id FROM events WHERE source = 'stripe' AND customer_id = 'c7' AND status = 'PARKED' ORDER BY kafka_partition, kafka_offset LIMIT 1`,
		} {
			plan := explain(t, conn, q)
			if strings.Contains(plan, "Seq Scan") {
				t.Errorf("%s scans:\n%s", q, plan)
			}
		}
		if _, err := migrate.DownTo(ctx, dbURL, 6); err != nil {
			t.Fatal(err)
		}
	}
}

// explain is q's plan with sequential scans priced out: a plan that
// still has one has no index to use instead.
func explain(t *testing.T, conn *pgx.Conn, q string) string {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+q)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

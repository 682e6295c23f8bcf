// Command fillevents fills a migrated hookstream database with PROCESSED
// events spread evenly over -days days ending now, in buckets of
// -bucket-days (the retention job's period: 7 days for the default 14-day
// retention), in bulk, for the scale benchmark (scripts/bench-scale.sh):
// each bucket's partition is built as a table of its own, filled, indexed
// like the parent, then attached, as if the retention job had opened them.
// Event ids are random-looking (md5), as providers' are. It refuses a
// database that holds events already.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

func main() {
	dbURL := flag.String("database-url", "", "PostgreSQL URL of a migrated database")
	events := flag.Int64("events", 100_000_000, "events to write")
	days := flag.Int("days", 30, "days to spread them over, ending today")
	bucketDays := flag.Int("bucket-days", 7, "days per bucket")
	customers := flag.Int("customers", 100_000, "distinct customers")
	workers := flag.Int("workers", 2, "buckets filled at once")
	flag.Parse()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1) x`).Scan(&n); err != nil || n > 0 {
		log.Fatalf("the database must be migrated and hold no events: %v", err)
	}
	start := time.Now()
	today := start.Truncate(24 * time.Hour)
	day := 24 * time.Hour
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(*workers)
	var total int64
	b := 0
	for from := 0; from < *days; from += *bucketDays {
		to := min(from+*bucketDays, *days)
		b++
		bucket, first, count := b, *events*int64(from)/int64(*days), *events*int64(to-from)/int64(*days)
		opened := today.Add(time.Duration(from-*days) * day)
		span := time.Duration(to-from) * day
		total += count
		g.Go(func() error { return fill(gctx, pool, bucket, opened, span, first, count, *customers) })
	}
	if err := g.Wait(); err != nil {
		log.Fatal(err)
	}
	if err := finish(ctx, pool, b); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("filled %d events over %d days in %d buckets in %s\n", total, *days, b, time.Since(start).Round(time.Second))
}

// fill builds bucket b's partition with count events numbered from first,
// their times spread over span from opened.
func fill(ctx context.Context, pool *pgxpool.Pool, b int, opened time.Time, span time.Duration, first, count int64, customers int) error {
	t := time.Now()
	name := pgx.Identifier{fmt.Sprintf("events_b%d", b)}.Sanitize()
	for _, q := range []string{
		`CREATE TABLE ` + name + ` (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
		fmt.Sprintf(`INSERT INTO %s (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset,
  received_at, created_at, updated_at, processed_at, bucket)
SELECT 'generic', 'evt_' || md5(i::text), 'cus_' || (i %% %d), 'bench.event', 'PROCESSED', 1, (i %% 12)::int, i,
  ts, ts, ts, ts, %d
FROM generate_series(%d, %d) AS i, LATERAL (SELECT '%s'::timestamptz + make_interval(secs => (i - %d)::float8 * %d / %d) AS ts) t`,
			name, customers, b, first, first+count-1, opened.Format(time.RFC3339), first, int64(span.Seconds()), count),
		`CREATE UNIQUE INDEX ON ` + name + ` (source, event_id, bucket)`,
		`CREATE INDEX ON ` + name + ` (customer_id, status)`,
		`CREATE INDEX ON ` + name + ` (status, updated_at)`,
		`CREATE INDEX ON ` + name + ` (source, customer_id, kafka_partition, kafka_offset) WHERE status = 'PARKED'`,
		fmt.Sprintf(`ALTER TABLE %s ADD CHECK (bucket = %d)`, name, b),
		`VACUUM (ANALYZE) ` + name,
		fmt.Sprintf(`ALTER TABLE events ATTACH PARTITION %s FOR VALUES IN (%d)`, name, b),
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("bucket %d: %w", b, err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO event_buckets (bucket, opened_at) VALUES ($1, $2)`, b, opened); err != nil {
		return err
	}
	log.Printf("bucket %d: %d events in %s", b, count, time.Since(t).Round(time.Second))
	return nil
}

// finish makes the last bucket current and drops bucket 0 (empty, and
// older than the first, so the retention job would have dropped it).
func finish(ctx context.Context, pool *pgxpool.Pool, last int) error {
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE event_clock SET bucket = $1`, []any{last}},
		{`ALTER TABLE events DETACH PARTITION events_b0`, nil},
		{`DROP TABLE events_b0`, nil},
		{`DELETE FROM event_buckets WHERE bucket = 0`, nil},
		{`ANALYZE events`, nil},
	} {
		if _, err := pool.Exec(ctx, q.sql, q.args...); err != nil {
			return err
		}
	}
	return nil
}

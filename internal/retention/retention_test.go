package retention_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/retention"
	"github.com/hookstream/hookstream/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// opened is when bucket 0 became current (the migration's time).
func opened(t *testing.T, pool *pgxpool.Pool) time.Time {
	t.Helper()
	var at time.Time
	if err := pool.QueryRow(context.Background(), `SELECT opened_at FROM event_buckets WHERE bucket = 0`).Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

func run(t *testing.T, cfg retention.Config, now time.Time) retention.Report {
	t.Helper()
	rep, err := retention.Run(context.Background(), cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func exec(t *testing.T, pool *pgxpool.Pool, q string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), q, args...); err != nil {
		t.Fatal(err)
	}
}

// statuses maps each event of source s to its bucket.
func buckets(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id, bucket FROM events WHERE source = 's'`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var id string
	var b int
	if _, err := pgx.ForEachRow(rows, []any{&id, &b}, func() error { out[id] = b; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func partitions(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass ORDER BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// On a fake clock: a bucket gives way after its period (half the
// retention), its successor's partition made just before, and a bucket closed longer than the
// retention ago is dropped with its PROCESSED events, while the events in
// it that are not finished move into the current bucket and stay.
func TestBucketsRotateAndDropKeepingUnfinished(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	cfg := retention.Config{Pool: pool}
	t0 := opened(t, pool)
	exec(t, pool, `INSERT INTO events (source, event_id, customer_id, status) VALUES
('s', 'done', 'c', 'PROCESSED'), ('s', 'failed', 'c', 'FAILED'), ('s', 'dead', 'c', 'DEAD'),
('s', 'parked', 'c', 'PARKED'), ('s', 'processing', 'c', 'PROCESSING')`)

	if rep := run(t, cfg, t0.Add(time.Hour)); rep.Current != 0 || rep.Opened || len(rep.Dropped) != 0 {
		t.Errorf("an hour in: %+v, want bucket 0 still current and nothing dropped", rep)
	}
	if got := partitions(t, pool); len(got) != 1 || got[0] != "events_b0" {
		t.Errorf("partitions %q, want events_b0 alone (the next is made when it opens)", got)
	}
	period := retention.PeriodFor(retention.DefaultRetention) // a week
	if rep := run(t, cfg, t0.Add(period-time.Minute)); rep.Opened {
		t.Errorf("a minute before the period ends: %+v, want bucket 0 still current", rep)
	}
	if rep := run(t, cfg, t0.Add(period+time.Hour)); rep.Current != 1 || !rep.Opened {
		t.Errorf("a period in: %+v, want bucket 1 opened", rep)
	}
	exec(t, pool, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('s', 'later', 'c', 'PROCESSED')`)
	closed := t0.Add(period + time.Hour)
	if rep := run(t, cfg, closed.Add(retention.DefaultRetention-time.Minute)); len(rep.Dropped) != 0 {
		t.Errorf("a minute before bucket 0 expires: dropped %v", rep.Dropped)
	}
	rep := run(t, cfg, closed.Add(retention.DefaultRetention))
	if len(rep.Dropped) != 1 || rep.Dropped[0] != 0 || rep.Moved != 4 {
		t.Errorf("bucket 0 expired: %+v, want it dropped with 4 events moved", rep)
	}
	got := buckets(t, pool)
	want := map[string]int{"failed": rep.Current, "dead": rep.Current, "parked": rep.Current, "processing": rep.Current, "later": 1}
	if len(got) != len(want) {
		t.Errorf("events %v, want %v", got, want)
	}
	for id, b := range want {
		if got[id] != b {
			t.Errorf("event %s in bucket %d (present %v), want %d", id, got[id], got != nil, b)
		}
	}
	for _, p := range partitions(t, pool) {
		if p == "events_b0" {
			t.Error("bucket 0's partition is still attached")
		}
	}
	// A second round at the same time changes nothing.
	if again := run(t, cfg, closed.Add(retention.DefaultRetention)); again.Opened || len(again.Dropped) != 0 {
		t.Errorf("the round again: %+v", again)
	}
}

// The dedupe window is the retention: the receiver finds a duplicate
// while its bucket is kept, and a first delivery once it is dropped.
func TestDuplicateInsideAndOutsideTheWindow(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	cfg := retention.Config{Pool: pool, Retention: 2 * time.Hour, Period: time.Hour}
	t0 := opened(t, pool)
	exec(t, pool, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('s', 'evt', 'c', 'PROCESSED')`)
	dups := ingest.NewPostgresDuplicates(pool, ingest.PostgresDuplicatesConfig{Timeout: 10 * time.Second})
	defer dups.Close()
	lookup := func() ingest.Status {
		done := make(chan ingest.Status, 1)
		dups.Lookup("s", "evt", func(st ingest.Status, err error) {
			if err != nil {
				t.Error(err)
			}
			done <- st
		})
		return <-done
	}
	run(t, cfg, t0.Add(90*time.Minute)) // bucket 1 opens: evt's bucket closes
	run(t, cfg, t0.Add(3*time.Hour))    // bucket 2 opens; bucket 0 closed 90 minutes ago
	if st := lookup(); st != ingest.StatusProcessed {
		t.Errorf("inside the window: %q, want PROCESSED (a duplicate)", st)
	}
	if rep := run(t, cfg, t0.Add(3*time.Hour+31*time.Minute)); len(rep.Dropped) != 1 {
		t.Fatalf("bucket 0 expired: %+v", rep)
	}
	if st := lookup(); st != ingest.StatusUnknown {
		t.Errorf("outside the window: %q, want unknown (a new event)", st)
	}
}

// A new bucket becomes current only once every transaction holding the
// bucket lock has ended: a writer that began before the switch writes into
// the bucket it found, and the switch waits for it.
func TestOpeningWaitsForWriters(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	t0 := opened(t, pool)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := retention.HoldBuckets(ctx, tx); err != nil {
		t.Fatal(err)
	}
	done := make(chan retention.Report, 1)
	go func() {
		rep, err := retention.Run(ctx, retention.Config{Pool: pool}, t0.Add(retention.PeriodFor(retention.DefaultRetention)))
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	waitForLockWait(t, pool)
	if _, err := tx.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('s', 'racing', 'c', 'PROCESSED')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := <-done; !rep.Opened || rep.Current != 1 {
		t.Errorf("round: %+v, want bucket 1 opened", rep)
	}
	if got := buckets(t, pool)["racing"]; got != 0 {
		t.Errorf("the writer's event is in bucket %d, want 0 (current when it began)", got)
	}
}

// waitForLockWait returns once a session waits for an advisory lock.
func waitForLockWait(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		if err := pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session waits for the bucket lock")
		}
		time.Sleep(10 * time.Millisecond) // pg_locks has no notification to wait on
	}
}

// planTracer EXPLAINs, on another connection, every statement of the
// round that moves unfinished events, just before the round runs it.
type planTracer struct {
	pool  *pgxpool.Pool
	plans []string
	err   error
}

func (p *planTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !strings.HasPrefix(data.SQL, "UPDATE events SET bucket") {
		return ctx
	}
	rows, err := p.pool.Query(context.Background(), "EXPLAIN "+data.SQL, data.Args...)
	if err == nil {
		var lines []string
		lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		p.plans = append(p.plans, strings.Join(lines, "\n"))
	}
	p.err = errors.Join(p.err, err)
	return ctx
}

func (p *planTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestMoveReadsOnlyUnfinishedEvents: the move of an expired bucket's
// unfinished events holds the bucket lock exclusively, so every writer of
// events waits for it; it must find those events through an index on
// status, not read the whole day's partition (mostly PROCESSED rows).
func TestMoveReadsOnlyUnfinishedEvents(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	t0 := opened(t, pool)
	exec(t, pool, `INSERT INTO events (source, event_id, customer_id, status, kafka_partition, kafka_offset)
SELECT 's', 'e' || i, 'c' || (i % 100), CASE WHEN i % 10000 = 0 THEN 'FAILED' ELSE 'PROCESSED' END, 0, i
FROM generate_series(1, 50000) AS i`)
	exec(t, pool, `ANALYZE events_b0`)
	cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	tracer := &planTracer{pool: pool}
	cfg.ConnConfig.Tracer = tracer
	traced, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer traced.Close()
	period := retention.PeriodFor(retention.DefaultRetention)
	run(t, retention.Config{Pool: traced}, t0.Add(period))
	rep := run(t, retention.Config{Pool: traced}, t0.Add(period+retention.DefaultRetention))
	if tracer.err != nil {
		t.Fatal(tracer.err)
	}
	if len(rep.Dropped) != 1 || rep.Moved != 5 || len(tracer.plans) != 1 {
		t.Fatalf("round %+v, %d moves explained; want bucket 0 dropped, 5 events moved, one move", rep, len(tracer.plans))
	}
	if plan := tracer.plans[0]; strings.Contains(plan, "Seq Scan on events_b0") || !strings.Contains(plan, "status_updated_idx") {
		t.Errorf("the move reads the whole partition instead of its unfinished events by index:\n%s", plan)
	}
}

// TestDetachWaitIsBounded: DETACH ... CONCURRENTLY waits for every
// transaction that uses events. One left open (an operator's session, a
// long report) must not stop retention: the round gives up on the detach
// after DetachTimeout, leaving it pending, so that later rounds still open
// buckets; the first round after that transaction ends finishes the drop.
func TestDetachWaitIsBounded(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	cfg := retention.Config{Pool: pool, DetachTimeout: 200 * time.Millisecond}
	t0 := opened(t, pool)
	exec(t, pool, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('s', 'done', 'c', 'PROCESSED'), ('s', 'dead', 'c', 'DEAD')`)
	period := retention.PeriodFor(retention.DefaultRetention)
	run(t, cfg, t0.Add(period))
	reader, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reader.Rollback(ctx) }()
	if _, err := reader.Exec(ctx, `SELECT count(*) FROM events`); err != nil {
		t.Fatal(err)
	}
	expiry := t0.Add(period + retention.DefaultRetention)
	done := make(chan error, 1)
	go func() {
		_, err := retention.Run(ctx, cfg, expiry)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the round dropped bucket 0 while a transaction that reads it is open")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the round still waits for an open transaction after 30s: no other round can run meanwhile")
	}
	rep, err := retention.Run(ctx, cfg, expiry.Add(period))
	if rep.Skipped || !rep.Opened {
		t.Errorf("a period later, with the transaction still open: %+v, %v; want the next bucket opened", rep, err)
	}
	if err := reader.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	rep = run(t, cfg, expiry.Add(period+time.Hour))
	if got := partitions(t, pool); slices.Contains(got, "events_b0") || len(rep.Dropped) != 1 || rep.Dropped[0] != 0 {
		t.Errorf("once the transaction ended: %+v, partitions %q; want bucket 0 dropped", rep, got)
	}
	if got := buckets(t, pool); len(got) != 1 || got["dead"] == 0 {
		t.Errorf("events %v, want only the DEAD one, moved out of bucket 0", got)
	}
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/internal/testenv"
)

// queryCounter counts the queries a pool runs.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// dedupeBench is an events table with known rows, a pool whose queries
// are counted, and a connection of its own that can hold the checker's
// query back.
type dedupeBench struct {
	pool    *pgxpool.Pool
	admin   *pgx.Conn // holds the lock
	watch   *pgx.Conn // looks at pg_stat_activity
	queries *queryCounter
	want    map[string]Status // event_id -> status, "" for unknown ids
}

func newDedupeBench(t *testing.T) *dedupeBench {
	t.Helper()
	url := testenv.Postgres(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	b := &dedupeBench{queries: &queryCounter{}, want: map[string]Status{}}
	cfg.ConnConfig.Tracer = b.queries
	b.pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.pool.Close)
	b.admin, err = pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.admin.Close(context.Background()) })
	b.watch, err = pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.watch.Close(context.Background()) })
	statuses := []Status{StatusProcessing, StatusProcessed, StatusFailed, StatusDead, StatusParked}
	for i := range 40 {
		id := fmt.Sprintf("evt_%02d", i)
		if i%2 == 1 { // every other id is unknown
			b.want[id] = StatusUnknown
			continue
		}
		st := statuses[i/2%len(statuses)]
		b.want[id] = st
		if _, err := b.admin.Exec(context.Background(),
			`INSERT INTO events (source, event_id, customer_id, status) VALUES ('src', $1, 'cus', $2)`, id, string(st)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// hold locks the events table so that the checker's next query waits in
// PostgreSQL; the returned function lets it go.
func (b *dedupeBench) hold(t *testing.T) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// waitHeld waits until a query of the checker waits for hold's lock.
func (b *dedupeBench) waitHeld(t *testing.T) {
	t.Helper()
	eventually(t, "a look-up query waiting for the lock", func() bool {
		var n int
		err := b.watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'
			AND query LIKE '%unnest%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// lookupAll runs the look-ups of ids concurrently and checks every answer.
func (b *dedupeBench) lookupAll(t *testing.T, d *PostgresDuplicates, ids []string) *sync.WaitGroup {
	t.Helper()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := d.Status(ctx, "src", id)
			if err != nil {
				t.Errorf("Status(%s): %v", id, err)
				return
			}
			if st != b.want[id] {
				t.Errorf("Status(%s) = %q, want %q", id, st, b.want[id])
			}
		})
	}
	return &wg
}

// waitQueued waits until n look-ups wait in the checker's queue.
func waitQueued(t *testing.T, d *PostgresDuplicates, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d queued look-ups", n), func() bool { return len(d.reqs) == n })
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("evt_%02d", i))
	}
	return out
}

// Look-ups that queue while a query runs are answered by one query, each
// with its own status.
func TestDuplicatesShareQueries(t *testing.T) {
	b := newDedupeBench(t)
	d := NewPostgresDuplicates(b.pool, PostgresDuplicatesConfig{Timeout: time.Minute, FloorRefresh: time.Hour})
	defer d.Close()

	release := b.hold(t)
	before := b.queries.n.Load()
	first := b.lookupAll(t, d, ids(0, 1))
	b.waitHeld(t) // the first look-up's query is running
	rest := b.lookupAll(t, d, ids(1, 40))
	waitQueued(t, d, 39)
	release()
	first.Wait()
	rest.Wait()
	if got := b.queries.n.Load() - before; got != 2 {
		t.Errorf("40 look-ups took %d queries, want 2 (the first, then the 39 that queued behind it)", got)
	}
}

// answers records how often, and with what, each look-up was answered.
type answers struct {
	mu  sync.Mutex
	n   map[string]int
	err map[string]chan error
}

func newAnswers(ids ...string) *answers {
	a := &answers{n: map[string]int{}, err: map[string]chan error{}}
	for _, id := range ids {
		a.err[id] = make(chan error, 2)
	}
	return a
}

func (a *answers) fn(id string) func(Status, error) {
	return func(_ Status, err error) {
		a.mu.Lock()
		a.n[id]++
		a.mu.Unlock()
		a.err[id] <- err
	}
}

func (a *answers) wait(t *testing.T, id string) error {
	t.Helper()
	select {
	case err := <-a.err[id]:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("look-up %s not answered", id)
		return nil
	}
}

// A look-up that waits behind a held-up query is answered ErrTimeout at its
// Timeout, by its own timer (its query has not started, so nothing else
// could answer it), and only once: its query's later answer is dropped.
func TestLookupTimeout(t *testing.T) {
	b := newDedupeBench(t)
	const timeout = 300 * time.Millisecond
	d := NewPostgresDuplicates(b.pool, PostgresDuplicatesConfig{Timeout: timeout})
	release := b.hold(t)
	a := newAnswers("evt_00", "evt_01")
	d.Lookup("src", "evt_00", a.fn("evt_00"))
	b.waitHeld(t) // evt_00's query waits for the lock
	d.Lookup("src", "evt_01", a.fn("evt_01"))
	if err := a.wait(t, "evt_01"); !errors.Is(err, ErrTimeout) {
		t.Errorf("queued look-up answered %v, want ErrTimeout", err)
	}
	_ = a.wait(t, "evt_00") // a timeout too, from its timer or its query
	release()
	d.Close() // waits for the worker, and so for both queries' own ends
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n["evt_00"] != 1 || a.n["evt_01"] != 1 {
		t.Errorf("answers %v, want one each", a.n)
	}
}

// With the queue full, Lookup waits no longer than the Timeout and answers
// ErrTimeout.
func TestLookupQueueFull(t *testing.T) {
	b := newDedupeBench(t)
	const timeout = 300 * time.Millisecond
	d := NewPostgresDuplicates(b.pool, PostgresDuplicatesConfig{Timeout: timeout, MaxBatch: 1})
	defer d.Close()
	release := b.hold(t)
	defer release()
	a := newAnswers("evt_00", "evt_01", "evt_02")
	d.Lookup("src", "evt_00", a.fn("evt_00"))
	b.waitHeld(t)
	d.Lookup("src", "evt_01", a.fn("evt_01")) // fills the queue of one
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		d.Lookup("src", "evt_02", a.fn("evt_02"))
	}()
	if err := a.wait(t, "evt_02"); !errors.Is(err, ErrTimeout) {
		t.Errorf("look-up on a full queue answered %v, want ErrTimeout", err)
	}
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("Lookup still waiting for room after its answer")
	}
}

func TestLookupAfterClose(t *testing.T) {
	d := NewPostgresDuplicates(nil, PostgresDuplicatesConfig{})
	d.Close()
	got := make(chan error, 1)
	d.Lookup("src", "evt", func(_ Status, err error) { got <- err })
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Errorf("answer %v, want ErrClosed", err)
	}
}

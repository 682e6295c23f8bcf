package consumer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/testenv"
)

// txWatch is an HTTP destination that, during each call, looks in
// pg_stat_activity for a transaction of the consumer's pool (its
// connections carry application_name app) that is open while the call
// runs: a backend idle in a transaction (waiting for its client, which is
// busy with the call), or running a statement of a transaction that
// holds an xid (it wrote or locked). The consumer's statements outside
// transactions only read, so neither is ever one of those.
type txWatch struct {
	t    *testing.T
	pool *pgxpool.Pool // the test's own: another application_name
	app  string
	fail func(eventID string) bool // answer 503 (and check nothing)

	mu      sync.Mutex
	calls   map[string]int
	checked int
	seen    []string
}

func (w *txWatch) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Idempotency-Key")
	w.mu.Lock()
	w.calls[id]++
	w.mu.Unlock()
	if w.fail != nil && w.fail(id) {
		rw.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	// The pool's connections are there (idle, mostly): the name finds them.
	var conns int
	if err := w.pool.QueryRow(r.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, w.app).Scan(&conns); err != nil || conns == 0 {
		w.t.Errorf("no backend of the consumer's pool (application_name %s) in pg_stat_activity: %d, %v", w.app, conns, err)
	}
	rows, err := w.pool.Query(r.Context(), `SELECT pid, state, coalesce(backend_xid::text, ''), left(query, 80) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND xact_start IS NOT NULL
  AND (state LIKE 'idle in transaction%' OR (state = 'active' AND backend_xid IS NOT NULL))`, w.app)
	if err != nil {
		w.t.Errorf("pg_stat_activity: %v", err)
		rw.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var seen []string
	var pid int
	var state, xid, query string
	if _, err := pgx.ForEachRow(rows, []any{&pid, &state, &xid, &query}, func() error {
		seen = append(seen, fmt.Sprintf("%s: backend %d %s (xid %q) at %q", id, pid, state, xid, query))
		return nil
	}); err != nil {
		w.t.Errorf("pg_stat_activity: %v", err)
		rw.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.mu.Lock()
	w.checked++
	w.seen = append(w.seen, seen...)
	w.mu.Unlock()
	rw.WriteHeader(http.StatusOK)
}

// watched sets tb up with a txWatch destination (for the source generic)
// and a member whose pool is its own, named apart from the test's.
func watched(t *testing.T, fail func(string) bool) (*testBundle, *txWatch, func(consumer.Config)) {
	t.Helper()
	dbURL := testenv.Postgres(t)
	tb := setupWith(t, dbURL)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1) // one batch at a time: no other transaction of the member is legitimately open during a call
	w := &txWatch{t: t, pool: tb.pool, app: "consumer-" + tb.group, fail: fail, calls: map[string]int{}}
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = w.app
	cpool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpool.Close) // after the member stops (cleanups run last first)
	d := consumer.NewDestinations([]sources.Source{{Name: "generic", Destination: &sources.Destination{URL: srv.URL, Timeout: 30 * time.Second}}}, srv.Client(), 0)
	run := func(c consumer.Config) {
		c.Deliverer = d
		mine := *tb
		mine.pool = cpool
		mine.member(c)
	}
	return tb, w, run
}

func (w *txWatch) report(t *testing.T, wantChecked int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.checked < wantChecked {
		t.Errorf("%d calls checked, want at least %d", w.checked, wantChecked)
	}
	if len(w.seen) > 0 {
		t.Errorf("transactions of the consumer's pool open during destination calls:\n%s", strings.Join(w.seen, "\n"))
	}
}

// TestNoTransactionAcrossBatchCalls: while a batch's HTTP destination
// calls run (deliverBatch: lanes side by side), no connection of the
// consumer's pool is in a transaction.
func TestNoTransactionAcrossBatchCalls(t *testing.T) {
	t.Parallel()
	tb, w, run := watched(t, nil)
	const customers, perCustomer = 10, 3
	produce := func(round int) {
		for c := range customers {
			for seq := range perCustomer {
				tb.produce("generic", fmt.Sprintf("r%d-c%d-%d", round, c, seq), "cus_"+strconv.Itoa(c), round*perCustomer+seq)
			}
		}
		tb.flush()
	}
	produce(0)
	run(consumer.Config{Concurrency: 4})
	tb.waitFor(time.Minute, customers*perCustomer, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	produce(1) // a batch after the first one's commit too
	tb.waitFor(time.Minute, 2*customers*perCustomer, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	w.report(t, 2*customers*perCustomer)
}

// TestNoTransactionAcrossStepCalls: a blocked customer's steps (the
// blocker's retry, then each parked event's drain; blocks.go) call the
// destination with no connection of the consumer's pool in a transaction.
func TestNoTransactionAcrossStepCalls(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	broken.Store(true)
	tb, w, run := watched(t, func(id string) bool { return id == "b-0" && broken.Load() })
	for seq := range 4 {
		tb.produce("generic", fmt.Sprintf("b-%d", seq), "cus_b", seq)
	}
	tb.flush()
	run(consumer.Config{Retry: func(string) consumer.RetryPolicy {
		return consumer.RetryPolicy{MaxAttempts: 1000, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	}})
	// b-0 fails (the customer is blocked behind it, retried by steps) and
	// the others wait behind it, never called by the batch path.
	tb.waitFor(time.Minute, 3, `SELECT count(*) FROM events WHERE customer_id = 'cus_b' AND status = 'PARKED'`)
	broken.Store(false)
	tb.waitFor(time.Minute, 4, `SELECT count(*) FROM events WHERE customer_id = 'cus_b' AND status = 'PROCESSED'`)
	tb.waitFor(time.Minute, 0, `SELECT count(*) FROM customer_blocks`)
	w.mu.Lock()
	for seq := 1; seq < 4; seq++ {
		if n := w.calls[fmt.Sprintf("b-%d", seq)]; n != 1 {
			t.Errorf("b-%d called %d times, want once (by its drain)", seq, n)
		}
	}
	if w.calls["b-0"] < 2 {
		t.Errorf("b-0 called %d times, want a failure and a retry", w.calls["b-0"])
	}
	w.mu.Unlock()
	w.report(t, 4) // b-0's healed retry and the three drained events
}

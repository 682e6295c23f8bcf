package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/topics"
	"github.com/hookstream/hookstream/internal/wire"
)

// recorder is an HTTP destination that records each delivery.
type recorder struct {
	mu    sync.Mutex
	calls []delivery
}

type delivery struct {
	Customer string `json:"customer_id"`
	Seq      int    `json:"seq"`
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var d delivery
	if err := json.NewDecoder(req.Body).Decode(&d); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.calls = append(r.calls, d)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// startConsume runs `hookstream consume` as its own process.
func startConsume(t *testing.T, env []string, name string) *exec.Cmd {
	t.Helper()
	return startConsumeLog(t, env, name, &testLog{t: t, prefix: name})
}

// startConsumeLog is startConsume with the process's log going to stderr.
func startConsumeLog(t *testing.T, env []string, name string, stderr io.Writer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, "consume", "--instance", name, "--concurrency", "4", "--log-level", "warn", "--session-timeout", "6s", "--http-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

type testLog struct {
	t      *testing.T
	prefix string
	drop   []string // lines containing one of these are not logged
}

func (l *testLog) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line != "" && !slices.ContainsFunc(l.drop, func(d string) bool { return strings.Contains(line, d) }) {
			l.t.Logf("%s: %s", l.prefix, line)
		}
	}
	return len(p), nil
}

// loadFixture is a private broker with hookstream's topics, a database, an
// HTTP destination that records deliveries, a sources file pointing at it,
// and customers*perCustomer events already in the events topic.
type loadFixture struct {
	t           *testing.T
	ctx         context.Context
	env         []string
	rec         *recorder
	pool        *pgxpool.Pool
	customers   int
	perCustomer int
}

func newLoadFixture(t *testing.T, customers, perCustomer int) *loadFixture {
	t.Helper()
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	f := &loadFixture{t: t, rec: &recorder{}, customers: customers, perCustomer: perCustomer}
	dest := httptest.NewServer(f.rec)
	t.Cleanup(dest.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	f.ctx = ctx

	testTopics(ctx, t, broker.Addrs(), 6)
	srcFile := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(srcFile, []byte(fmt.Sprintf(`sources:
  - name: load
    scheme: none
    event_id: {pointer: /event_id}
    customer_id: {pointer: /customer_id}
    destination: {url: %q, timeout: 5s}
`, dest.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	prod, err := kafka.NewProducer(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for seq := range perCustomer {
		for c := range customers {
			cust := "cus_" + strconv.Itoa(c)
			id := fmt.Sprintf("%s-%d", cust, seq)
			body := fmt.Sprintf(`{"event_id":%q,"customer_id":%q,"seq":%d}`, id, cust, seq)
			prod.Produce(ctx, &kgo.Record{Topic: wire.DefaultEventsTopic, Key: []byte(cust), Value: []byte(body), Headers: []kgo.RecordHeader{
				{Key: wire.HeaderEventID, Value: []byte(id)}, {Key: wire.HeaderSource, Value: []byte("load")},
				{Key: wire.HeaderCustomerID, Value: []byte(cust)}, {Key: wire.HeaderContentType, Value: []byte("application/json")},
			}}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce: %v", err)
				}
			})
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.env = []string{"HOOKSTREAM_KAFKA_BROKERS=" + broker.Addrs()[0], "HOOKSTREAM_DATABASE_URL=" + dbURL, "HOOKSTREAM_SOURCES=" + srcFile}
	f.pool, err = pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pool.Close)
	return f
}

func (f *loadFixture) total() int { return f.customers * f.perCustomer }

// waitDeliveries polls until the destination has seen n deliveries.
func (f *loadFixture) waitDeliveries(n int) {
	f.t.Helper()
	for f.rec.count() < n {
		if f.ctx.Err() != nil {
			f.t.Fatalf("only %d deliveries, waiting for %d", f.rec.count(), n)
		}
		time.Sleep(5 * time.Millisecond) // polling for a point in the load
	}
}

// check waits until every event is PROCESSED, then asserts each was
// processed exactly once, each customer's PROCESSED outcomes are in sequence
// order, and no customer's delivery ever ran ahead of one not yet made:
// after a crash or a rebalance the destination may see again, in order,
// what the lost transaction had delivered (it gets Idempotency-Key for
// that), but never an event before its predecessors.
func (f *loadFixture) check() {
	t := f.t
	t.Helper()
	for {
		var n int
		if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == f.total() {
			break
		}
		if f.ctx.Err() != nil {
			t.Fatalf("%d of %d PROCESSED", n, f.total())
		}
		time.Sleep(50 * time.Millisecond) // polling for the state
	}
	var processedRows, dupProcessed int
	if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_log WHERE action = 'PROCESSED'`).Scan(&processedRows); err != nil {
		t.Fatal(err)
	}
	if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM (SELECT event_id FROM audit_log WHERE action = 'PROCESSED' GROUP BY event_id HAVING count(*) > 1) d`).Scan(&dupProcessed); err != nil {
		t.Fatal(err)
	}
	if processedRows != f.total() || dupProcessed != 0 {
		t.Errorf("PROCESSED audit rows %d (want %d), events processed twice %d", processedRows, f.total(), dupProcessed)
	}
	rows, err := f.pool.Query(f.ctx, `SELECT customer_id, event_id FROM audit_log WHERE action = 'PROCESSED' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]int{}
	var cust, id string
	if _, err := pgx.ForEachRow(rows, []any{&cust, &id}, func() error {
		want := fmt.Sprintf("%s-%d", cust, done[cust])
		if id != want {
			return fmt.Errorf("customer %s: PROCESSED %s, want %s next", cust, id, want)
		}
		done[cust]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.rec.mu.Lock()
	defer f.rec.mu.Unlock()
	last := map[string]int{}
	for i, d := range f.rec.calls {
		prev, seen := last[d.Customer]
		if !seen {
			prev = -1
		}
		if d.Seq > prev+1 {
			t.Fatalf("delivery %d: customer %s seq %d after %d", i, d.Customer, d.Seq, prev)
		}
		last[d.Customer] = d.Seq
	}
	for c, s := range last {
		if s != f.perCustomer-1 {
			t.Errorf("customer %s ends at seq %d", c, s)
		}
	}
	t.Logf("%d deliveries for %d events", len(f.rec.calls), f.total())
}

// TestConsumerSurvivesSIGKILL: a consumer process killed with SIGKILL in the
// middle of a load and replaced by a new one.
func TestConsumerSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	f := newLoadFixture(t, 20, 100)
	first := startConsume(t, f.env, "first")
	f.waitDeliveries(f.total() / 3)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	startConsume(t, f.env, "second")
	f.check()
}

// TestConsumerRebalance: three members share the load; one leaves (SIGTERM,
// a graceful stop) and another joins while it runs.
func TestConsumerRebalance(t *testing.T) {
	t.Parallel()
	f := newLoadFixture(t, 30, 80)
	a := startConsume(t, f.env, "a")
	startConsume(t, f.env, "b")
	startConsume(t, f.env, "c")
	f.waitDeliveries(f.total() / 4)
	if err := a.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Under load: the transactions in flight are abandoned (rolled back,
	// for the partitions' next owners), offsets committed, the group left.
	termAt := time.Now()
	if err := a.Wait(); err != nil {
		t.Errorf("member a did not stop cleanly on SIGTERM: %v", err)
	}
	if d := time.Since(termAt); d > 15*time.Second {
		t.Errorf("member a took %s to stop after SIGTERM", d)
	}
	f.waitDeliveries(f.total() / 2)
	startConsume(t, f.env, "d")
	f.check()
}

// testTopics creates hookstream's topics, with partitions partitions, on a
// test's private broker, the way `hookstream topics` does.
func testTopics(ctx context.Context, t *testing.T, brokers []string, partitions int32) {
	t.Helper()
	if err := ensureTopics(ctx, kafka.Config{Brokers: brokers}, topics.Config{Partitions: partitions}, io.Discard, func(string) {}); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

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
	cmd := exec.Command(binary, "consume", "--instance", name, "--concurrency", "4", "--log-level", "warn", "--session-timeout", "6s")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &testLog{t: t, prefix: name}
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
}

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s: %s", l.prefix, p)
	return len(p), nil
}

// TestConsumerSurvivesSIGKILL: a consumer process killed with SIGKILL in the
// middle of a load, then replaced: every event ends PROCESSED exactly once,
// and no customer's events were delivered out of order (a delivery may
// repeat right after the crash — the destination gets Idempotency-Key for
// that — but never goes backwards).
func TestConsumerSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	rec := &recorder{}
	dest := httptest.NewServer(rec)
	defer dest.Close()

	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := topics.Ensure(ctx, adm, topics.Config{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
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

	const customers, perCustomer = 20, 100
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

	env := []string{"HOOKSTREAM_KAFKA_BROKERS=" + broker.Addrs()[0], "HOOKSTREAM_DATABASE_URL=" + dbURL, "HOOKSTREAM_SOURCES=" + srcFile}
	first := startConsume(t, env, "first")
	total := customers * perCustomer
	for rec.count() < total/3 {
		if time.Now().After(deadlineOf(ctx)) {
			t.Fatalf("only %d deliveries before the crash point", rec.count())
		}
		time.Sleep(5 * time.Millisecond) // polling for the crash point
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	killedAt := rec.count()
	startConsume(t, env, "second")

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == total {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d PROCESSED", n, total)
		}
		time.Sleep(50 * time.Millisecond) // polling for the state
	}
	var processedRows, dupProcessed int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'PROCESSED'`).Scan(&processedRows); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT event_id FROM audit_log WHERE action = 'PROCESSED' GROUP BY event_id HAVING count(*) > 1) d`).Scan(&dupProcessed); err != nil {
		t.Fatal(err)
	}
	if processedRows != total || dupProcessed != 0 {
		t.Errorf("PROCESSED audit rows %d (want %d), events processed twice %d", processedRows, total, dupProcessed)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	last := map[string]int{}
	for i, d := range rec.calls {
		prev, seen := last[d.Customer]
		switch {
		case !seen && d.Seq != 0:
			t.Fatalf("delivery %d: customer %s starts at seq %d", i, d.Customer, d.Seq)
		case seen && d.Seq != prev && d.Seq != prev+1:
			t.Fatalf("delivery %d: customer %s seq %d after %d", i, d.Customer, d.Seq, prev)
		}
		last[d.Customer] = d.Seq
	}
	for c, s := range last {
		if s != perCustomer-1 {
			t.Errorf("customer %s ends at seq %d", c, s)
		}
	}
	t.Logf("killed after %d deliveries; %d deliveries in all for %d events", killedAt, len(rec.calls), total)
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

package consumer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type testBundle struct {
	t        *testing.T
	brokers  []string
	topics   wire.Topics
	pool     *pgxpool.Pool
	producer *kgo.Client
	group    string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, testenv.Postgres(t))
}

func setupWith(t *testing.T, dbURL string) *testBundle {
	t.Helper()
	brokers := testenv.Kafka(t)
	tb := &testBundle{t: t, brokers: brokers, topics: testenv.Topics(t, brokers)}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 40
	tb.pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.pool.Close)
	if _, err := tb.pool.Exec(context.Background(), `CREATE TABLE handled (n bigserial PRIMARY KEY, event_id text NOT NULL, customer_id text NOT NULL, seq int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	tb.producer, err = kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.producer.Close)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tb.group = "test-" + hex.EncodeToString(b)
	return tb
}

// start runs a consumer member until the test ends.
func (tb *testBundle) start(h consumer.Handler, policy consumer.RetryPolicy) {
	tb.t.Helper()
	c, err := consumer.New(consumer.Config{
		Brokers: tb.brokers, Pool: tb.pool, Handler: h, Audit: audit.Writer{}, Group: tb.group, Topics: tb.topics,
		Retry:       func(string) consumer.RetryPolicy { return policy },
		Concurrency: 8, Instance: "test",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	tb.t.Cleanup(func() { cancel(); <-done })
}

// produce writes an event the way the receiver does.
func (tb *testBundle) produce(source, eventID, customer string, seq int) {
	tb.t.Helper()
	r := &kgo.Record{Topic: tb.topics.Events, Key: []byte(customer), Value: []byte(fmt.Sprintf(`{"seq":%d}`, seq)),
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderEventID, Value: []byte(eventID)},
			{Key: wire.HeaderSource, Value: []byte(source)},
			{Key: wire.HeaderCustomerID, Value: []byte(customer)},
			{Key: wire.HeaderEventType, Value: []byte("t")},
			{Key: wire.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		}}
	tb.producer.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
		if err != nil {
			tb.t.Errorf("produce: %v", err)
		}
	})
}

func (tb *testBundle) flush() {
	tb.t.Helper()
	if err := tb.producer.Flush(context.Background()); err != nil {
		tb.t.Fatal(err)
	}
}

// waitFor polls query (one integer) until it equals want, for at most d.
func (tb *testBundle) waitFor(d time.Duration, want int, query string, args ...any) {
	tb.t.Helper()
	deadline := time.Now().Add(d)
	var got int
	for {
		if err := tb.pool.QueryRow(context.Background(), query, args...).Scan(&got); err != nil {
			tb.t.Fatal(err)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("after %s: %q = %d, want %d", d, query, got, want)
		}
		time.Sleep(50 * time.Millisecond) // polling, not timing: the assertion is on the state
	}
}

// recordingHandler writes each call to the handled table through the
// transaction it is given.
var recordingHandler = consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
	var seq int
	if _, err := fmt.Sscanf(string(ev.Body), `{"seq":%d}`, &seq); err != nil {
		return consumer.Permanent(err)
	}
	_, err := tx.Exec(ctx, `INSERT INTO handled (event_id, customer_id, seq) VALUES ($1, $2, $3)`, ev.EventID, ev.CustomerID, seq)
	return err
})

// goneFor is recordingHandler, but a permanent failure (410) for the
// customers stored in broken.
func goneFor(broken *sync.Map) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		if _, bad := broken.Load(ev.CustomerID); bad {
			return consumer.Permanent(errors.New("410 gone"))
		}
		return recordingHandler(ctx, tx, ev)
	})
}

// TestOrderPerCustomer: 200 customers' events interleaved across 12
// partitions, with 8 customers of a partition processed at once: every
// customer's events are handled in sequence order, each exactly once.
func TestOrderPerCustomer(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	const customers, perCustomer = 200, 15
	for seq := range perCustomer {
		for c := range customers {
			tb.produce("generic", fmt.Sprintf("c%d-e%d", c, seq), "cus_"+strconv.Itoa(c), seq)
		}
	}
	tb.flush()
	tb.start(recordingHandler, consumer.RetryPolicy{})
	tb.waitFor(2*time.Minute, customers*perCustomer, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)

	rows, err := tb.pool.Query(context.Background(), `SELECT customer_id, seq FROM handled ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int{}
	count := 0
	var cust string
	var seq int
	_, err = pgx.ForEachRow(rows, []any{&cust, &seq}, func() error {
		count++
		prev, ok := last[cust]
		if (!ok && seq != 0) || (ok && seq != prev+1) {
			return fmt.Errorf("customer %s: seq %d after %d", cust, seq, prev)
		}
		last[cust] = seq
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != customers*perCustomer {
		t.Fatalf("handler ran %d times, want %d", count, customers*perCustomer)
	}
	// Every decision is in audit_log and queued for the relay.
	tb.waitFor(time.Second, customers*perCustomer, `SELECT count(*) FROM audit_log WHERE action = 'PROCESSED'`)
	tb.waitFor(time.Second, 2*customers*perCustomer, `SELECT count(*) FROM audit_log WHERE xid IS NOT NULL`)
}

// TestEffectivelyOnce: the same event produced twice is handled once, and a
// restarted member (new process, same group) handles nothing again.
func TestEffectivelyOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for i := range 50 {
		id := "dup-" + strconv.Itoa(i)
		tb.produce("generic", id, "cus_"+strconv.Itoa(i%5), i)
		tb.produce("generic", id, "cus_"+strconv.Itoa(i%5), i)
	}
	tb.flush()
	tb.start(recordingHandler, consumer.RetryPolicy{})
	tb.waitFor(time.Minute, 50, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	tb.waitFor(time.Minute, 50, `SELECT count(*) FROM audit_log WHERE action = 'DUPLICATE'`)
	tb.waitFor(time.Second, 50, `SELECT count(*) FROM handled`)
	tb.waitFor(time.Second, 0, `SELECT count(*) FROM (SELECT event_id FROM handled GROUP BY event_id HAVING count(*) > 1) d`)
}

// TestPoisonParksCustomer: a handler that fails for one customer dead-letters
// its event and parks it — its later events are stored PARKED — while the
// other customers finish.
func TestPoisonParksCustomer(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var mu sync.Mutex
	calls := map[string]int{}
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		mu.Lock()
		calls[ev.EventID]++
		mu.Unlock()
		if ev.CustomerID == "cus_bad" {
			return errors.New("destination says no")
		}
		return recordingHandler(ctx, tx, ev)
	})
	for seq := range 5 {
		for _, c := range []string{"cus_bad", "cus_a", "cus_b"} {
			tb.produce("generic", fmt.Sprintf("%s-%d", c, seq), c, seq)
		}
	}
	tb.flush()
	tb.start(h, consumer.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	tb.waitFor(time.Minute, 10, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE status = 'DEAD' AND event_id = 'cus_bad-0' AND attempts = 3`)
	tb.waitFor(time.Minute, 4, `SELECT count(*) FROM events WHERE status = 'PARKED' AND customer_id = 'cus_bad'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM customer_blocks WHERE customer_id = 'cus_bad' AND state = 'PARKED' AND blocking_event_id = 'cus_bad-0'`)
	tb.waitFor(time.Second, 2, `SELECT count(*) FROM audit_log WHERE event_id = 'cus_bad-0' AND action = 'RETRY_SCHEDULED'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE event_id = 'cus_bad-0' AND action = 'DEAD_LETTERED'`)
	mu.Lock()
	if calls["cus_bad-0"] != 3 || calls["cus_bad-1"] != 0 {
		t.Errorf("handler calls: blocker %d (want 3), next %d (want 0: parked)", calls["cus_bad-0"], calls["cus_bad-1"])
	}
	mu.Unlock()

	// The dead letter carries the body, the error and the attempts.
	cl, err := kgo.NewClient(kgo.SeedBrokers(tb.brokers...), kgo.ConsumeTopics(tb.topics.DLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("%d dead letters, want 1 (%v)", len(recs), fs.Errors())
	}
	h2 := map[string]string{}
	for _, h := range recs[0].Headers {
		h2[h.Key] = string(h.Value)
	}
	if string(recs[0].Key) != "cus_bad" || string(recs[0].Value) != `{"seq":0}` || h2["attempts"] != "3" || h2["error"] != "destination says no" || h2[wire.HeaderEventID] != "cus_bad-0" {
		t.Errorf("dead letter %q %q %v", recs[0].Key, recs[0].Value, h2)
	}
}

// TestReplayUnparks: after a poison event parks its customer, fixing the
// destination and replaying the blocker processes it and then the parked
// events, in their original order, and unparks the customer.
func TestReplayUnparks(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var broken sync.Map
	broken.Store("cus_p", true)
	h := goneFor(&broken)
	for seq := range 4 {
		tb.produce("generic", fmt.Sprintf("p-%d", seq), "cus_p", seq)
	}
	tb.flush()
	tb.start(h, consumer.RetryPolicy{MaxAttempts: 5, InitialBackoff: 10 * time.Millisecond})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'p-0' AND status = 'DEAD' AND attempts = 1`)
	tb.waitFor(time.Minute, 3, `SELECT count(*) FROM events WHERE customer_id = 'cus_p' AND status = 'PARKED'`)

	// A new event while parked is parked too, after the others.
	tb.produce("generic", "p-4", "cus_p", 4)
	tb.flush()
	tb.waitFor(time.Minute, 4, `SELECT count(*) FROM events WHERE customer_id = 'cus_p' AND status = 'PARKED'`)

	if err := consumer.Replay(context.Background(), consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}, Instance: "test"}, "generic", "p-2", "test"); !errors.Is(err, consumer.ErrNotReplayable) {
		t.Errorf("replaying a PARKED event: %v, want ErrNotReplayable", err)
	}
	broken.Delete("cus_p")
	if err := consumer.Replay(context.Background(), consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}, Instance: "test"}, "generic", "p-0", "destination fixed"); err != nil {
		t.Fatal(err)
	}
	tb.waitFor(time.Minute, 5, `SELECT count(*) FROM events WHERE customer_id = 'cus_p' AND status = 'PROCESSED'`)
	tb.waitFor(time.Second, 0, `SELECT count(*) FROM customer_blocks`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE action = 'UNPARKED' AND customer_id = 'cus_p'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE action = 'REPLAYED' AND event_id = 'p-0' AND actor = 'admin'`)
	var order string
	if err := tb.pool.QueryRow(context.Background(), `SELECT string_agg(seq::text, ',' ORDER BY n) FROM handled WHERE customer_id = 'cus_p'`).Scan(&order); err != nil {
		t.Fatal(err)
	}
	if order != "0,1,2,3,4" {
		t.Errorf("handled in order %s, want 0,1,2,3,4", order)
	}
}

// TestPostgresOutage: PostgreSQL stops for several seconds in the middle of
// a load. Processing pauses without losing or repeating anything, and
// resumes by itself when the database is back.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	tb := setupWith(t, pg.URL())
	const customers, perCustomer = 20, 60
	for seq := range perCustomer {
		for c := range customers {
			tb.produce("generic", fmt.Sprintf("c%d-e%d", c, seq), "cus_"+strconv.Itoa(c), seq)
		}
	}
	tb.flush()
	slow := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		time.Sleep(5 * time.Millisecond) // a handler with some latency, so the outage lands mid-load
		return recordingHandler(ctx, tx, ev)
	})
	tb.start(slow, consumer.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond})
	tb.waitForAtLeast(time.Minute, customers*perCustomer/4, `SELECT count(*) FROM handled`)
	pg.Stop()
	var atStop int
	if err := tb.pool.QueryRow(context.Background(), `SELECT 1`).Scan(&atStop); err == nil {
		t.Fatal("query succeeded with PostgreSQL stopped")
	}
	time.Sleep(3 * time.Second) // the outage itself; nothing is asserted about its length
	pg.Start()
	if err := tb.pool.QueryRow(context.Background(), `SELECT count(*) FROM handled`).Scan(&atStop); err != nil {
		t.Fatal(err)
	}
	if atStop >= customers*perCustomer {
		t.Fatal("the load finished before the outage; the test did not test it")
	}
	tb.waitFor(2*time.Minute, customers*perCustomer, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	tb.waitFor(time.Second, customers*perCustomer, `SELECT count(*) FROM handled`)
	tb.waitFor(time.Second, 0, `SELECT count(*) FROM events WHERE status <> 'PROCESSED'`)
	var bad int
	err := tb.pool.QueryRow(context.Background(), `SELECT count(*) FROM (
  SELECT seq, lag(seq) OVER (PARTITION BY customer_id ORDER BY n) AS prev FROM handled) x
WHERE prev IS NOT NULL AND seq <> prev + 1`).Scan(&bad)
	if err != nil || bad != 0 {
		t.Fatalf("%d out-of-order handler calls (%v)", bad, err)
	}
}

// waitForAtLeast polls query until it is at least want.
func (tb *testBundle) waitForAtLeast(d time.Duration, want int, query string) {
	tb.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var got int
		if err := tb.pool.QueryRow(context.Background(), query).Scan(&got); err != nil {
			tb.t.Fatal(err)
		}
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("after %s: %q = %d, want at least %d", d, query, got, want)
		}
		time.Sleep(20 * time.Millisecond) // polling for the state
	}
}

// TestRetryWindow: with a retry window, a failing event goes DEAD when its
// next attempt would start after the window, long before MaxAttempts.
func TestRetryWindow(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	h := consumer.HandlerFunc(func(context.Context, pgx.Tx, *consumer.Event) error { return errors.New("still down") })
	tb.produce("generic", "w-0", "cus_w", 0)
	tb.flush()
	tb.start(h, consumer.RetryPolicy{MaxAttempts: 1000, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, MaxElapsed: 300 * time.Millisecond})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'w-0' AND status = 'DEAD' AND attempts BETWEEN 2 AND 30`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE event_id = 'w-0' AND action = 'DEAD_LETTERED' AND reason = 'retry_window_exhausted'`)
}

// TestPositionWaitsForLeftEvents: when a batch takes several transactions
// (CommitInterval), none but the last stores the partition's position: a
// crash in between must not skip the events not yet recorded. The handler
// of the batch's last event (a re-drive of an unknown event, processed as
// new) reads the stored position from outside the transaction.
func TestPositionWaitsForLeftEvents(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1) // one partition: one batch holds both customers
	for seq := range 20 {
		tb.produce("generic", fmt.Sprintf("a-%d", seq), "cus_a", seq)
	}
	redriven := &kgo.Record{Topic: tb.topics.Events, Key: []byte("cus_r"), Value: []byte(`{"seq":0}`), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderEventID, Value: []byte("r-0")}, {Key: wire.HeaderSource, Value: []byte("generic")},
		{Key: wire.HeaderCustomerID, Value: []byte("cus_r")}, {Key: wire.HeaderRedrive, Value: []byte("true")},
	}}
	if err := tb.producer.ProduceSync(context.Background(), redriven).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tb.flush()
	seen := make(chan string, 1)
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		if ev.CustomerID == "cus_a" {
			time.Sleep(2 * time.Millisecond) // handler work: each group transaction takes one event
			return nil
		}
		var next int64 = -1
		err := tb.pool.QueryRow(ctx, `SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = 0`, tb.group, tb.topics.Events).Scan(&next)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if next > ev.Offset {
			seen <- fmt.Sprintf("position %d already past the left event at offset %d", next, ev.Offset)
		} else {
			seen <- ""
		}
		return nil
	})
	c, err := consumer.New(consumer.Config{Brokers: tb.brokers, Pool: tb.pool, Handler: h, Audit: audit.Writer{}, Group: tb.group,
		Topics: tb.topics, CommitInterval: time.Millisecond, Instance: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case msg := <-seen:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(time.Minute):
		t.Fatal("the re-driven event was not processed")
	}
	tb.waitFor(time.Minute, 21, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
}

// TestTakeCommitsStoredPosition: a member that takes a partition whose
// position in PostgreSQL is ahead of the group's committed offset in
// Kafka (its previous owner processed the records and died, or was
// fenced, before its commit went out) commits that position, although
// the partition has nothing left to consume. Before, an idle partition
// kept the stale offset, and every tool reading the group's lag showed
// records that were long processed as waiting (the fault schedule found
// it after a member's SIGKILL).
func TestTakeCommitsStoredPosition(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for i := range 24 {
		tb.produce("s", fmt.Sprintf("evt-%d", i), fmt.Sprintf("cus-%d", i), 0)
	}
	tb.flush()
	cl, err := kgo.NewClient(kgo.SeedBrokers(tb.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, tb.topics.Events)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	// The previous owner's outcomes: every record processed, its position
	// stored, and nothing committed to the group.
	ends.Each(func(o kadm.ListedOffset) {
		if _, err := tb.pool.Exec(ctx, `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, owner_epoch) VALUES ($1, $2, $3, $4, 1)`,
			tb.group, tb.topics.Events, o.Partition, o.Offset); err != nil {
			t.Fatal(err)
		}
	})
	tb.start(recordingHandler, consumer.RetryPolicy{MaxAttempts: 1})
	deadline := time.Now().Add(30 * time.Second)
	for {
		committed, err := adm.FetchOffsets(ctx, tb.group)
		behind := 0
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := committed.Lookup(o.Topic, o.Partition); err != nil || !ok || c.At < o.Offset {
				behind++
			}
		})
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d partitions' committed offsets are behind the positions the member took (%v)", behind, err)
		}
		time.Sleep(100 * time.Millisecond) // polling for the commit
	}
	tb.waitFor(time.Second, 0, `SELECT count(*) FROM handled`)
}

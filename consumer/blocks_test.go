package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// member runs a consumer with cfg (the bundle's brokers, pool, group and
// topics filled in) until stop is called or the test ends.
func (tb *testBundle) member(cfg consumer.Config) (stop func()) {
	tb.t.Helper()
	cfg.Brokers, cfg.Pool, cfg.Audit, cfg.Group, cfg.Topics = tb.brokers, tb.pool, audit.Writer{}, tb.group, tb.topics
	if cfg.Instance == "" {
		cfg.Instance = "test"
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.BlockPoll = 50 * time.Millisecond
	c, err := consumer.New(cfg)
	if err != nil {
		tb.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	tb.t.Cleanup(stop)
	return stop
}

func (tb *testBundle) order(customer string) string {
	tb.t.Helper()
	var order *string
	if err := tb.pool.QueryRow(context.Background(), `SELECT string_agg(seq::text, ',' ORDER BY n) FROM handled WHERE customer_id = $1`, customer).Scan(&order); err != nil {
		tb.t.Fatal(err)
	}
	if order == nil {
		return ""
	}
	return *order
}

func policy1() func(string) consumer.RetryPolicy {
	return func(string) consumer.RetryPolicy { return consumer.RetryPolicy{MaxAttempts: 1} }
}

// TestInterruptedDrainResumes: a member stopped in the middle of draining
// a customer's parked events leaves the drain to the next owner, which
// finishes it before the customer's newer events.
func TestInterruptedDrainResumes(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1) // one member's stop hands everything to the next
	var broken atomic.Bool
	broken.Store(true)
	inside := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		switch {
		case ev.EventID == "d-0" && broken.Load():
			return consumer.Permanent(errors.New("410"))
		case ev.EventID == "d-1" && !broken.Load():
			once.Do(func() { close(inside) })
			select { // the member stops while its handler is here
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return recordingHandler(ctx, tx, ev)
	})
	for seq := range 3 {
		tb.produce("generic", fmt.Sprintf("d-%d", seq), "cus_d", seq)
	}
	tb.flush()
	stopA := tb.member(consumer.Config{Handler: h, Retry: policy1(), Instance: "a"})
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM events WHERE customer_id = 'cus_d' AND status = 'PARKED'`)
	broken.Store(false)
	if err := consumer.Replay(context.Background(), consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}}, "generic", "d-0", "fixed"); err != nil {
		t.Fatal(err)
	}
	<-inside
	stopA()
	close(release)
	tb.member(consumer.Config{Handler: h, Retry: policy1(), Instance: "b"})
	tb.produce("generic", "d-3", "cus_d", 3)
	tb.flush()
	tb.waitFor(time.Minute, 4, `SELECT count(*) FROM events WHERE customer_id = 'cus_d' AND status = 'PROCESSED'`)
	tb.waitFor(time.Minute, 0, `SELECT count(*) FROM customer_blocks`)
	if got := tb.order("cus_d"); got != "0,1,2,3" {
		t.Errorf("handled in order %s, want 0,1,2,3", got)
	}
}

// TestBackoffDoesNotHoldOthers: while one customer's event waits out a long
// backoff, the other customers of its partition keep flowing, including
// those whose events come after it, and its own later events wait behind it.
func TestBackoffDoesNotHoldOthers(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1)
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		if ev.CustomerID == "cus_slow" {
			return errors.New("503 from destination")
		}
		return recordingHandler(ctx, tx, ev)
	})
	tb.produce("generic", "slow-0", "cus_slow", 0)
	tb.flush()
	tb.member(consumer.Config{Handler: h, Retry: func(string) consumer.RetryPolicy {
		return consumer.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Hour, MaxBackoff: time.Hour}
	}})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM customer_blocks WHERE customer_id = 'cus_slow' AND state = 'BLOCKED'`)
	for seq := range 20 {
		tb.produce("generic", fmt.Sprintf("slow-%d", seq+1), "cus_slow", seq+1)
		tb.produce("generic", fmt.Sprintf("fast-%d", seq), "cus_fast", seq)
	}
	tb.flush()
	tb.waitFor(time.Minute, 20, `SELECT count(*) FROM events WHERE customer_id = 'cus_fast' AND status = 'PROCESSED'`)
	tb.waitFor(time.Minute, 20, `SELECT count(*) FROM events WHERE customer_id = 'cus_slow' AND status = 'PARKED'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM events WHERE event_id = 'slow-0' AND status = 'FAILED' AND attempts = 1`)
	// The position moved past everything: the waiting events are durable
	// in PostgreSQL, not in memory.
	tb.waitFor(time.Minute, 41, `SELECT next_offset::int FROM consumer_offsets WHERE group_id = $1`, tb.group)
}

// TestReplayOfSkippedDeadEvent: an event an operator skipped (left DEAD)
// and replays later, while its customer is parked behind another dead
// event, waits behind that one and runs in its turn (it used to be counted
// a duplicate and dropped).
func TestReplayOfSkippedDeadEvent(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var broken atomic.Bool
	broken.Store(true)
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		if (ev.EventID == "s-0" || ev.EventID == "s-1") && broken.Load() {
			return consumer.Permanent(errors.New("422"))
		}
		return recordingHandler(ctx, tx, ev)
	})
	for seq := range 4 {
		tb.produce("generic", fmt.Sprintf("s-%d", seq), "cus_s", seq)
	}
	tb.flush()
	tb.member(consumer.Config{Handler: h, Retry: policy1()})
	tb.waitFor(time.Minute, 3, `SELECT count(*) FROM events WHERE customer_id = 'cus_s' AND status = 'PARKED'`)
	cfg := consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}}
	if err := consumer.Unpark(context.Background(), cfg, "cus_s", consumer.UnparkOptions{SkipBlocker: true, Reason: "skip"}); err != nil {
		t.Fatal(err)
	}
	// s-1 runs next and dies too: the customer is parked behind it.
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM events WHERE status = 'DEAD'`)
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM customer_blocks`)
	broken.Store(false)
	if err := consumer.Replay(context.Background(), cfg, "generic", "s-0", "fixed"); err != nil {
		t.Fatal(err)
	}
	if err := consumer.Unpark(context.Background(), cfg, "cus_s", consumer.UnparkOptions{Reason: "fixed"}); err != nil {
		t.Fatal(err)
	}
	tb.waitFor(time.Minute, 4, `SELECT count(*) FROM events WHERE customer_id = 'cus_s' AND status = 'PROCESSED'`)
	if got := tb.order("cus_s"); got != "1,0,2,3" {
		t.Errorf("handled in order %s, want 1,0,2,3 (the blocker, then the waiting events oldest first)", got)
	}
}

// TestBlocksAreKeyedBySource: a dead event of one source parks that
// source's customer only; a customer with the same id in another source
// flows.
func TestBlocksAreKeyedBySource(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		if ev.Source == "stripe" {
			return consumer.Permanent(errors.New("410"))
		}
		return recordingHandler(ctx, tx, ev)
	})
	tb.produce("stripe", "x-0", "cus_x", 0)
	tb.flush()
	tb.member(consumer.Config{Handler: h, Retry: policy1()})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM customer_blocks WHERE source = 'stripe' AND customer_id = 'cus_x' AND state = 'PARKED'`)
	for seq := range 3 {
		tb.produce("github", fmt.Sprintf("g-%d", seq), "cus_x", seq)
	}
	tb.flush()
	tb.waitFor(time.Minute, 3, `SELECT count(*) FROM events WHERE source = 'github' AND status = 'PROCESSED'`)
}

// TestConcurrencyBoundsEveryPath: however events reach the handler (a
// batch, a retry, a drain), at most Concurrency calls run at once.
func TestConcurrencyBoundsEveryPath(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var inFlight, peak atomic.Int64
	var failedOnce sync.Map
	d := deliverFunc(func(ctx context.Context, ev *consumer.Event) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond) // a call that lasts, so that calls overlap
		if _, seen := failedOnce.LoadOrStore(ev.EventID, true); !seen {
			return errors.New("503") // every event fails once: all of them go through retries
		}
		return nil
	})
	const customers = 40
	for c := range customers {
		for seq := range 3 {
			tb.produce("generic", fmt.Sprintf("b%d-%d", c, seq), "cus_"+strconv.Itoa(c), seq)
		}
	}
	tb.flush()
	tb.member(consumer.Config{Deliverer: d, Concurrency: 3, Retry: func(string) consumer.RetryPolicy {
		return consumer.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	}})
	tb.waitFor(2*time.Minute, customers*3, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	if p := peak.Load(); p > 3 {
		t.Errorf("%d calls at once, want at most 3", p)
	}
}

type deliverFunc func(context.Context, *consumer.Event) error

func (f deliverFunc) Deliver(ctx context.Context, ev *consumer.Event) error { return f(ctx, ev) }

// TestMalformedRecordDeadLettered: a record without hookstream metadata is
// not skipped silently: it goes to the dead-letter topic with the reason,
// and the events after it are processed.
func TestMalformedRecordDeadLettered(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1)
	bad := &kgo.Record{Topic: tb.topics.Events, Key: []byte("cus_m"), Value: []byte(`{"seq":0}`)}
	if err := tb.producer.ProduceSync(context.Background(), bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tb.produce("generic", "m-1", "cus_m", 1)
	tb.flush()
	tb.member(consumer.Config{Handler: recordingHandler})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'm-1' AND status = 'PROCESSED'`)
	cl, err := kgo.NewClient(kgo.SeedBrokers(tb.brokers...), kgo.ConsumeTopics(tb.topics.DLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := cl.PollFetches(ctx).Records()
	if len(recs) != 1 || string(recs[0].Value) != `{"seq":0}` {
		t.Fatalf("dead letters: %v", recs)
	}
	var reason string
	for _, h := range recs[0].Headers {
		if h.Key == "error" {
			reason = string(h.Value)
		}
	}
	if reason == "" {
		t.Errorf("the dead letter carries no reason: %v", recs[0].Headers)
	}
}

// TestSkipBlockerOnlySkipsADeadBlocker: skipping is refused unless the
// customer is PARKED behind a dead event, so a skip issued while a replay
// of the blocker is pending (or repeated) cannot skip the next event.
func TestSkipBlockerOnlySkipsADeadBlocker(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	h := consumer.HandlerFunc(func(context.Context, pgx.Tx, *consumer.Event) error { return consumer.Permanent(errors.New("410")) })
	for seq := range 3 {
		tb.produce("generic", fmt.Sprintf("k-%d", seq), "cus_k", seq)
	}
	tb.flush()
	stop := tb.member(consumer.Config{Handler: h, Retry: policy1()})
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM events WHERE customer_id = 'cus_k' AND status = 'PARKED'`)
	stop() // nothing runs the replay: it stays pending
	cfg := consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}}
	if err := consumer.Replay(context.Background(), cfg, "generic", "k-0", "try again"); err != nil {
		t.Fatal(err)
	}
	if err := consumer.Unpark(context.Background(), cfg, "cus_k", consumer.UnparkOptions{SkipBlocker: true, Reason: "skip"}); !errors.Is(err, consumer.ErrNotParked) {
		t.Fatalf("skip while the blocker's replay is pending: %v, want ErrNotParked", err)
	}
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM customer_blocks WHERE blocking_event_id = 'k-0' AND state = 'BLOCKED'`)
	tb.waitFor(time.Second, 0, `SELECT count(*) FROM audit_log WHERE action = 'UNPARKED'`)
}

// TestFencedMemberCommitsNothing: a member whose partition was taken by
// another (its epoch raised) while it was delivering records neither the
// outcome nor a position; still assigned the partition after RetakeDelay,
// it takes it again and goes on, delivering the fenced event again.
func TestFencedMemberCommitsNothing(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1)
	inside := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	calls := map[string]int{}
	d := deliverFunc(func(ctx context.Context, ev *consumer.Event) error {
		mu.Lock()
		calls[ev.EventID]++
		first := ev.EventID == "z-1" && calls[ev.EventID] == 1
		mu.Unlock()
		if first {
			close(inside)
			<-release
		}
		return nil
	})
	tb.produce("generic", "z-0", "cus_z", 0)
	tb.flush()
	tb.member(consumer.Config{Deliverer: d, RetakeDelay: 100 * time.Millisecond})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'z-0' AND status = 'PROCESSED'`)
	tb.produce("generic", "z-1", "cus_z", 1)
	tb.flush()
	<-inside
	// Another member takes the partition (what its assignment does).
	if _, err := tb.pool.Exec(context.Background(), `UPDATE consumer_offsets SET owner_epoch = owner_epoch + 1 WHERE group_id = $1`, tb.group); err != nil {
		t.Fatal(err)
	}
	close(release)
	tb.produce("generic", "z-2", "cus_z", 2)
	tb.flush()
	tb.waitFor(time.Minute, 3, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	// The fenced attempt recorded nothing: z-1 was delivered again after
	// the member took the partition back (epochs: its take, the other's,
	// its retake), and recorded once.
	tb.waitFor(time.Second, 3, `SELECT owner_epoch::int FROM consumer_offsets WHERE group_id = $1`, tb.group)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE event_id = 'z-1' AND action = 'PROCESSED'`)
	mu.Lock()
	defer mu.Unlock()
	if calls["z-1"] != 2 {
		t.Errorf("z-1 delivered %d times, want 2 (the fenced call and the one after the retake)", calls["z-1"])
	}
}

// TestTravellingDecisionWrittenOnce: the receiver's decision that travels
// in the event record is written to audit_log by the consumer, with the
// record's partition and offset, once however often the record comes; an
// unreadable one does not stop the event.
func TestTravellingDecisionWrittenOnce(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1)
	id := uuid.Must(uuid.NewV7()).String()
	dec, err := json.Marshal(&wire.AuditRecord{SchemaVersion: wire.AuditSchemaVersion, AuditID: id, EventID: "t-0", Source: "generic",
		CustomerID: "cus_t", Action: wire.ActionAccepted, HTTPStatus: 202, Actor: wire.ActorIngest, Instance: "rcv", At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(eventID string, header []byte) *kgo.Record {
		return &kgo.Record{Topic: tb.topics.Events, Key: []byte("cus_t"), Value: []byte(`{"seq":0}`), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderEventID, Value: []byte(eventID)}, {Key: wire.HeaderSource, Value: []byte("generic")},
			{Key: wire.HeaderCustomerID, Value: []byte("cus_t")}, {Key: wire.HeaderAudit, Value: header}}}
	}
	// The same record twice (a redelivery, a second produce), then one
	// whose decision does not read.
	if err := tb.producer.ProduceSync(context.Background(), rec("t-0", dec), rec("t-0", dec), rec("t-1", []byte(`{"nope"`))).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tb.member(consumer.Config{})
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE audit_id = $1 AND action = 'ACCEPTED' AND kafka_offset = 0 AND xid IS NOT NULL`, id)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE action = 'ACCEPTED'`)
}

// TestDecisionWhereNoPartitionIs: a receiver's decision dated where
// audit_log has no partition (its clock two centuries ahead) is written
// at the consumer's time, the receiver's kept in detail.receiver_at, and
// the events of the batch are processed; written as it came, it failed
// the batch, and every batch after it, forever.
func TestDecisionWhereNoPartitionIs(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.topics = testenv.TopicsN(t, tb.brokers, 1)
	id := uuid.Must(uuid.NewV7()).String()
	future := time.Date(2226, 12, 1, 0, 0, 0, 0, time.UTC)
	dec, err := json.Marshal(&wire.AuditRecord{SchemaVersion: wire.AuditSchemaVersion, AuditID: id, EventID: "f-0", Source: "generic",
		CustomerID: "cus_f", Action: wire.ActionAccepted, HTTPStatus: 202, Actor: wire.ActorIngest, Instance: "rcv", At: future})
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Topic: tb.topics.Events, Key: []byte("cus_f"), Value: []byte(`{"seq":0}`), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderEventID, Value: []byte("f-0")}, {Key: wire.HeaderSource, Value: []byte("generic")},
		{Key: wire.HeaderCustomerID, Value: []byte("cus_f")}, {Key: wire.HeaderAudit, Value: dec}}}
	// Twice in one batch: one decision, written once (each copy redated
	// at its own time was two rows).
	if err := tb.producer.ProduceSync(context.Background(), rec, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tb.produce("generic", "f-1", "cus_f", 1)
	tb.flush()
	tb.member(consumer.Config{BatchWait: time.Second})
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE audit_id = $1 AND action = 'ACCEPTED'
  AND at > now() - interval '1 hour' AND at <= now() AND (detail->>'receiver_at')::timestamptz = $2`, id, future)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM audit_log WHERE audit_id = $1`, id)
}

// TestSameEventInTwoPartitions: one event id produced under two customer
// keys (so in two partitions, and in one batch) is processed once and
// audited a duplicate once, instead of failing the batch's statement.
func TestSameEventInTwoPartitions(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var keys []string
	for i := 0; len(keys) < 2; i++ { // two customers of different partitions
		k := "cus_" + strconv.Itoa(i)
		if len(keys) == 0 || partitionOf(k, 12) != partitionOf(keys[0], 12) {
			keys = append(keys, k)
		}
	}
	tb.produce("generic", "twice", keys[0], 0)
	tb.produce("generic", "twice", keys[1], 0)
	tb.flush()
	tb.member(consumer.Config{Handler: recordingHandler, BatchWait: time.Second}) // both partitions in one batch
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM audit_log WHERE event_id = 'twice' AND action = 'DUPLICATE'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM handled WHERE event_id = 'twice'`)
}

// partitionOf is the partition franz-go's default key partitioner picks.
func partitionOf(key string, n int) int {
	return kgo.StickyKeyPartitioner(nil).ForTopic("t").Partition(&kgo.Record{Key: []byte(key)}, n)
}

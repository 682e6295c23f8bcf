package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/audit/audittest"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/topics"
	"github.com/hookstream/hookstream/internal/wire"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func record(eventID string, action wire.Action) *wire.AuditRecord {
	id, _ := uuid.NewV7()
	return &wire.AuditRecord{SchemaVersion: 1, AuditID: id.String(), EventID: eventID, Source: "generic", CustomerID: "c",
		Action: action, Actor: wire.ActorConsumer, Instance: "test", At: time.Now().UTC()}
}

// readAll returns the audit ids on topic in offset order per partition.
func readAll(t *testing.T, brokers []string, topic string) []wire.AuditRecord {
	t.Helper()
	var out []wire.AuditRecord
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := audit.Tail(ctx, audit.TailOptions{Brokers: brokers, Topic: topic}, writerFunc(func(p []byte) (int, error) {
		var a wire.AuditRecord
		if err := json.Unmarshal(p, &a); err != nil {
			return 0, err
		}
		out = append(out, a)
		return len(p), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// services returns a broker with topics of one partition (one total order
// to check) and a pool on a fresh database.
func services(t *testing.T) ([]string, wire.Topics, *pgxpool.Pool) {
	t.Helper()
	brokers := testenv.Kafka(t)
	tp := testenv.TopicsN(t, brokers, 1)
	pool := testenv.PostgresPool(t)
	return brokers, tp, pool
}

// topicHolds checks that topic holds exactly the audit ids want, in order.
func topicHolds(t *testing.T, brokers []string, topic string, want []string) {
	t.Helper()
	got := readAll(t, brokers, topic)
	if len(got) != len(want) {
		t.Fatalf("topic has %d records, want %d: every row once", len(got), len(want))
	}
	for i := range want {
		if got[i].AuditID != want[i] {
			t.Fatalf("record %d is %s, want %s (the table's commit order)", i, got[i].AuditID, want[i])
		}
	}
}

// commit writes recs in one transaction and commits it.
func commit(t *testing.T, pool *pgxpool.Pool, recs ...*wire.AuditRecord) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := (audit.Writer{}).Write(ctx, tx, recs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// newRelay returns a relay publishing to cfg.Topic.
func newRelay(t *testing.T, brokers []string, pool *pgxpool.Pool, cfg audit.RelayConfig) *audit.Relay {
	t.Helper()
	cfg.Pool, cfg.Kafka, cfg.Logger = pool, kafka.Config{Brokers: brokers}, slog.New(slog.DiscardHandler)
	relay, err := audit.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return relay
}

// TestRelayPublishesCommittedRowsOnceInOrder: rows committed while no relay
// runs (the relay "killed between a commit and its publish") are published
// once each, in commit order, when a relay starts; the rows of a
// transaction still open go out once it commits, after the rows of every
// transaction that committed before it, even one that wrote later.
func TestRelayPublishesCommittedRowsOnceInOrder(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	var want []string
	for i := range 5 {
		r := record(fmt.Sprintf("e%d", i), wire.ActionProcessed)
		commit(t, pool, r)
		want = append(want, r.AuditID)
	}
	// An open transaction, with an earlier xid and seq than a row
	// committed after it.
	open, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback(ctx) //nolint:errcheck // no-op once committed; frees the connection on failure
	late := record("late", wire.ActionProcessed)
	if err := (audit.Writer{}).Write(ctx, open, late); err != nil {
		t.Fatal(err)
	}
	after := record("after", wire.ActionProcessed)
	commit(t, pool, after)
	want = append(want, after.AuditID)

	relay := newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit})
	if n := audittest.Drain(t, relay, pool); n != 6 {
		t.Fatalf("published %d before the open transaction committed, want the 6 committed rows", n)
	}
	if err := open.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want, late.AuditID)
	if n := audittest.Drain(t, relay, pool); n != 1 {
		t.Fatalf("published %d after the commit, want 1", n)
	}
	if n := audittest.Drain(t, relay, pool); n != 0 {
		t.Fatalf("third run published %d, want 0: nothing twice", n)
	}
	topicHolds(t, brokers, tp.Audit, want)
}

// TestCompactionKeepsLatestPerEvent: after compaction the audit topic keeps
// the latest record of each event, and the table keeps the whole history.
//
// It uses a private broker, whose configs it may change, and an audit
// topic with a 1 ms min.compaction.lag.ms. On kfake it runs the cleaner on
// demand (Cluster.Compact). On Apache Kafka (HOOKSTREAM_TEST_KAFKA=apache)
// the cleaner runs on its own, and only on segments no longer written:
// the topic gets segment.ms 1 and records 100 ms old, so that every
// append rolls a new segment and the last record's is the only active
// one, and the broker's cleaner looks for work every 100 ms instead of
// 15 s. The lag stays an hour until the sink has copied every record
// (with 1 ms the cleaner got there first, and the sink copied 5 of 7: a
// reader behind by more than the lag misses what was compacted away, what
// production's 7-day lag is for), then drops to 1 ms; the test waits for
// the cleaner.
func TestCompactionKeepsLatestPerEvent(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t)
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	tp := wire.Topics{Events: "c.events", DLQ: "c.dlq", Audit: "c.audit"}
	if _, err := topics.Ensure(ctx, adm, topics.Config{Topics: tp, Partitions: 1, AuditPartitions: 1, AuditMinCompactionLag: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	onKfake := broker.Kafka() != nil
	if !onKfake {
		// Apache Kafka's cleaner runs on its own: no compaction before the
		// sink has read every record (a reader further behind than the
		// lag misses what was compacted away: that is what the lag is for).
		setTopicConfig(t, adm, tp.Audit, "min.compaction.lag.ms", "3600000")
		rollEveryAppend(t, adm, tp.Audit)
	}
	pool := testenv.PostgresPool(t)
	// The receiver's records reach the table through the sink.
	sink, err := audit.NewSink(audit.SinkConfig{Brokers: broker.Addrs(), Pool: pool, Topic: tp.Audit, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = sink.Run(sctx); close(done) }()
	defer func() { stop(); <-done }()

	producer, err := kafka.NewProducer(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	latest := map[string]string{}
	// One batch each, and a last record of another event: neither kfake nor
	// Kafka compacts the batch (segment) still being written.
	for _, r := range []*wire.AuditRecord{
		record("a", wire.ActionAccepted), record("b", wire.ActionAccepted), record("a", wire.ActionProcessing),
		record("b", wire.ActionProcessing), record("a", wire.ActionProcessed), record("b", wire.ActionProcessed),
		record("z", wire.ActionAccepted),
	} {
		r.Actor = wire.ActorIngest // the receiver's records reach the table through the sink
		kr, err := r.KafkaRecord(tp.Audit)
		if err != nil {
			t.Fatal(err)
		}
		// Older than segment.ms when the next one comes, however soon; not
		// so old that the producer's delivery timeout, counted from it,
		// gives up on it.
		kr.Timestamp = time.Now().Add(-100 * time.Millisecond)
		if err := producer.ProduceSync(ctx, kr).FirstErr(); err != nil {
			t.Fatal(err)
		}
		latest[r.EventID] = r.AuditID
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink copied %d of 7 records", n)
		}
		time.Sleep(20 * time.Millisecond) // polling for the state
	}
	var got []wire.AuditRecord
	if onKfake {
		broker.Kafka().Cluster().Compact()
		got = readAll(t, broker.Addrs(), tp.Audit)
	} else {
		setTopicConfig(t, adm, tp.Audit, "min.compaction.lag.ms", "1")
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if got = readAll(t, broker.Addrs(), tp.Audit); len(got) <= 3 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // polling for the cleaner, which runs on its own
		}
	}
	if len(got) != 3 {
		t.Fatalf("after compaction the topic has %d records, want 3 (one per event)", len(got))
	}
	for _, r := range got {
		if latest[r.EventID] != r.AuditID {
			t.Errorf("kept %s %s for %s, want the latest", r.Action, r.AuditID, r.EventID)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil || n != 7 {
		t.Errorf("table rows after compaction: %d (%v), want all 7", n, err)
	}
}

// TestRelayRunPublishesEveryRowOnceInOrder: the running relay reads a batch
// while the one before is being committed; across many small batches (a
// transaction's rows split between two) and a restart the topic still
// gets every row once, in the order the transactions committed.
func TestRelayRunPublishesEveryRowOnceInOrder(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	var want []string
	write := func(txs int) {
		for i := range txs {
			var recs []*wire.AuditRecord
			for j := range i%3 + 1 {
				r := record(fmt.Sprintf("e%d-%d", i, j), wire.ActionProcessed)
				recs, want = append(recs, r), append(want, r.AuditID)
			}
			commit(t, pool, recs...)
		}
	}
	relay := newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit, Batch: 7, Idle: time.Millisecond})
	write(40)
	audittest.Drain(t, relay, pool)
	write(20) // a relay that starts again carries on from the stored position
	audittest.Drain(t, relay, pool)
	topicHolds(t, brokers, tp.Audit, want)
}

// rollEveryAppend makes Apache Kafka's cleaner see what kfake's Compact
// does, soon: topic gets segment.ms 1 (with records older than that, each
// append rolls the segment, so that only the last record's is active and
// left alone), and the broker's cleaner, idle, looks for work every 100 ms
// (log.cleaner.backoff.ms, a dynamic broker config; the broker is this
// test's own).
func rollEveryAppend(t *testing.T, adm *kadm.Client, topic string) {
	t.Helper()
	setTopicConfig(t, adm, topic, "segment.ms", "1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brs, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.cleaner.backoff.ms", Value: kadm.StringPtr("100")}})
	if err == nil {
		for _, r := range brs {
			if r.Err != nil {
				err = fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
			}
		}
	}
	if err != nil {
		t.Fatalf("log.cleaner.backoff.ms: %v", err)
	}
}

// setTopicConfig sets one config of topic and returns once the broker
// reports it, as it applies it to the partition's log.
func setTopicConfig(t *testing.T, adm *kadm.Client, topic, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: key, Value: kadm.StringPtr(value)}}, topic)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = rs.On(topic, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatalf("%s of %s: %v", key, topic, err)
	}
	for {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if rc, err := rcs.On(topic, nil); err == nil && rc.Err == nil {
			for _, c := range rc.Configs {
				if c.Key == key && c.MaybeValue() == value {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s of %s not %s after a minute", key, topic, value)
		case <-time.After(20 * time.Millisecond): // the broker applies configs from the metadata log; nothing to wait on
		}
	}
}

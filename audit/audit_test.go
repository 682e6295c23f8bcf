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
	pool, err := pgxpool.New(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
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
// It uses a private kfake broker to run the cleaner on demand
// (Cluster.Compact) and an audit topic with a 1 ms min.compaction.lag.ms;
// kfake also compacts the active segment, which real Kafka does not, so on
// real Kafka the same assertion holds once the segment has rolled and the
// cleaner has run.
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
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
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
	broker.Kafka().Cluster().Compact()
	got := readAll(t, broker.Addrs(), tp.Audit)
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

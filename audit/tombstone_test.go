package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// readRaw reads the first n records of topic (one partition), whatever
// their values, or fails at the deadline.
func readRaw(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	if len(out) < n {
		t.Fatalf("%s: %d records, want %d", topic, len(out), n)
	}
	return out
}

// A tombstone is the record's key with no value, after the record; audit
// tail skips it; a batch with an empty key writes nothing.
func TestTombstones(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	tp := testenv.TopicsN(t, brokers, 1)
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	produce := func(r *wire.AuditRecord) {
		kr, err := r.KafkaRecord(tp.Audit)
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.ProduceSync(ctx, kr).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	gone, next := record("gone", wire.ActionProcessed), record("next", wire.ActionAccepted)
	produce(gone)
	if err := audit.Tombstones(ctx, producer, tp.Audit, []string{gone.Key()}); err != nil {
		t.Fatal(err)
	}
	if err := audit.Tombstones(ctx, producer, tp.Audit, []string{"generic/x", ""}); err == nil {
		t.Error("a tombstone with an empty key: no error")
	}
	produce(next)
	recs := readRaw(t, brokers, tp.Audit, 3)
	if string(recs[1].Key) != "generic/gone" || recs[1].Value != nil {
		t.Errorf("second record: key %q value %q, want the tombstone of generic/gone", recs[1].Key, recs[1].Value)
	}
	if string(recs[2].Key) != next.Key() {
		t.Errorf("third record: key %q, want %q: the refused batch wrote something", recs[2].Key, next.Key())
	}
	got := readAll(t, brokers, tp.Audit)
	if len(got) != 2 || got[0].AuditID != gone.AuditID || got[1].AuditID != next.AuditID {
		t.Errorf("audit tail: %d records %+v, want the two records and not the tombstone", len(got), got)
	}
}

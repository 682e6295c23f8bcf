package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestRelayBatchesATrickleByTime: rows committed one at a time while the
// relay runs go out in rounds that begin at least a Linger apart, so in
// fewer rounds than rows, and still once each in commit order. Each round is one Kafka transaction, whose commit marker
// takes an offset of the one-partition topic: rounds = end offset −
// records. The rounds are in hookstream_audit_relay_round_records too.
func TestRelayBatchesATrickleByTime(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	// Long enough that rows committed one after another on a loaded
	// machine still come several to a Linger.
	const linger = 500 * time.Millisecond
	relay := newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit, Linger: linger})
	countBefore, sumBefore := roundRecords(t)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- relay.Run(ctx) }()
	var want []string
	for len(want) < 20 {
		r := record(fmt.Sprintf("e%d", len(want)), wire.ActionProcessed)
		commit(t, pool, r)
		want = append(want, r.AuditID)
	}
	waitPublished(t, pool)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(began)

	rounds := int(endOffset(t, brokers, tp.Audit)) - len(want)
	t.Logf("%d rows in %d rounds in %v", len(want), rounds, elapsed)
	if most := int(elapsed/linger) + 1; rounds > most || rounds < 1 {
		t.Fatalf("%d rows went out in %d rounds in %v; want 1 to %d, a Linger (%v) apart", len(want), rounds, elapsed, most, linger)
	}
	if rounds >= len(want) {
		t.Fatalf("%d rows went out in %d rounds: not batched", len(want), rounds)
	}
	topicHolds(t, brokers, tp.Audit, want)
	// Other tests' relays add to the histogram too, never take away.
	if count, sum := roundRecords(t); count-countBefore < uint64(rounds) || sum-sumBefore < float64(len(want)) {
		t.Errorf("hookstream_audit_relay_round_records grew by %d rounds of %v records, want at least %d of %d",
			count-countBefore, sum-sumBefore, rounds, len(want))
	}
}

// waitPublished waits until the relay has stored a position past every
// committed row.
func waitPublished(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := audit.Unpublished(context.Background(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows still unpublished after 30s", n)
		}
		time.Sleep(5 * time.Millisecond) // polling the stored position
	}
}

// endOffset is the end offset of partition 0 of topic.
func endOffset(t *testing.T, brokers []string, topic string) int64 {
	t.Helper()
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok || o.Err != nil {
		t.Fatalf("end offset of %s: %v", topic, o.Err)
	}
	return o.Offset
}

// roundRecords reads hookstream_audit_relay_round_records: rounds and
// records.
func roundRecords(t *testing.T) (uint64, float64) {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "hookstream_audit_relay_round_records" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("no hookstream_audit_relay_round_records")
	return 0, 0
}

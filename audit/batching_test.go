package audit_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestRelayBatchesATrickleByTime: rows committed one at a time while the
// relay runs go out in rounds that begin at least a Linger apart, so in
// fewer rounds than rows, and still once each in commit order. The
// rounds are counted by hookstream_audit_relay_round_records: the test
// is not parallel, so no other relay adds to it meanwhile. (Counting the
// commit markers on the topic does not work on Apache Kafka, which writes
// them after the commit returns.)
func TestRelayBatchesATrickleByTime(t *testing.T) {
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

	count, sum := roundRecords(t)
	rounds := int(count - countBefore)
	t.Logf("%d rows in %d rounds in %v", len(want), rounds, elapsed)
	if most := int(elapsed/linger) + 1; rounds > most || rounds < 1 {
		t.Fatalf("%d rows went out in %d rounds in %v; want 1 to %d, a Linger (%v) apart", len(want), rounds, elapsed, most, linger)
	}
	if rounds >= len(want) {
		t.Fatalf("%d rows went out in %d rounds: not batched", len(want), rounds)
	}
	topicHolds(t, brokers, tp.Audit, want)
	if sum-sumBefore != float64(len(want)) {
		t.Errorf("hookstream_audit_relay_round_records counted %v records in %d rounds, want %d", sum-sumBefore, rounds, len(want))
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

// TestSinkCommitsOnlyWhatIsCopied: while the table cannot take the sink's
// copy (a lock held on audit_log), the sink's group commits nothing of
// the records it holds; once the rows are in the table their offsets are
// committed within CommitInterval without the sink stopping, and what it
// copied last is committed when it stops. Every receiver's record is
// copied once; the relay's are skipped.
func TestSinkCommitsOnlyWhatIsCopied(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	group := "sink-" + tp.Audit
	const interval = 100 * time.Millisecond // kgo's least
	adm, admCl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	committed := func() int64 {
		t.Helper()
		os, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		o, ok := os.Lookup(tp.Audit, 0)
		if !ok || o.At < 0 {
			return 0 // nothing committed
		}
		return o.At
	}
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ingested := 0
	// produce writes n records, the receiver's and the relay's in turn,
	// the receiver's first, and returns the end offset after them.
	produce := func(n int) int64 {
		t.Helper()
		var krs []*kgo.Record
		for i := range n {
			r := record(fmt.Sprintf("e%d", i), wire.ActionAccepted)
			if i%2 == 0 {
				r.Actor, ingested = wire.ActorIngest, ingested+1
			}
			kr, err := r.KafkaRecord(tp.Audit)
			if err != nil {
				t.Fatal(err)
			}
			krs = append(krs, kr)
		}
		if err := producer.ProduceSync(ctx, krs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return krs[n-1].Offset + 1
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s", what)
			}
			time.Sleep(5 * time.Millisecond) // polling for the state
		}
	}
	copied := func() int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx) //nolint:errcheck // no-op once rolled back
	if _, err := lock.Exec(ctx, `LOCK TABLE audit_log IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	end := produce(10)
	sink, err := audit.NewSink(audit.SinkConfig{Brokers: brokers, Pool: pool, Topic: tp.Audit, Group: group,
		CommitInterval: interval, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = sink.Run(sctx); close(done) }()
	defer func() { stop(); <-done }()
	waitFor("the sink's copy waiting for the lock", func() bool {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO audit_log%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	// A window of several commit intervals in which a commit of what the
	// sink holds would show; nothing may be committed in it.
	for watched := time.Now(); time.Since(watched) < 5*interval; time.Sleep(interval / 4) {
		if c := committed(); c != 0 {
			t.Fatalf("the group committed offset %d while the sink's copy of offset 0 waited for the table", c)
		}
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor("the first records copied", func() bool { return copied() == ingested })
	waitFor("their offsets committed while the sink runs", func() bool { return committed() == end })

	end = produce(7)
	waitFor("the last records copied", func() bool { return copied() == ingested })
	stop()
	<-done
	if c := committed(); c != end {
		t.Fatalf("the stopped sink's group is at offset %d, want %d: everything it copied", c, end)
	}
	if n := copied(); n != ingested {
		t.Fatalf("audit_log has %d rows, want the %d receiver's records once each", n, ingested)
	}
}

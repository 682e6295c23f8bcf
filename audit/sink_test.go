package audit_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/audit/audittest"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/wire"
)

// quarantined reads hookstream_audit_sink_quarantined_total{reason}.
func quarantined(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "hookstream_audit_sink_quarantined_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestSinkQuarantinesWhatTheTableRefuses: a tombstone, records the table
// refuses, then a good one, on the audit topic: the good one reaches
// audit_log, each refused one is in audit_quarantine byte for byte with its
// reason, the metric counts them, and the tombstone is in neither.
func TestSinkQuarantinesWhatTheTableRefuses(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	ingest := func(mod func(*wire.AuditRecord)) *kgo.Record {
		r := record("e", wire.ActionAccepted)
		r.Actor = wire.ActorIngest
		mod(r)
		kr, err := r.KafkaRecord(tp.Audit)
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	poison := []struct {
		name   string
		rec    *kgo.Record
		reason string
	}{
		{"audit_id not a UUID", ingest(func(r *wire.AuditRecord) { r.AuditID = "not-a-uuid" }), "22P02"},
		{"an action of a newer version", ingest(func(r *wire.AuditRecord) { r.Action = "ARCHIVED" }), "23514"},
		{"a number out of range", ingest(func(r *wire.AuditRecord) { r.HTTPStatus = 1 << 40 }), "22003"},
		{"a NUL in text", ingest(func(r *wire.AuditRecord) { r.Reason = "a\x00b" }), "22021"},
		// No partition of audit_log covers the year 2200 (migration 10).
		{"an at no partition takes", ingest(func(r *wire.AuditRecord) { r.At = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) }), "23514"},
		{"not JSON", &kgo.Record{Topic: tp.Audit, Key: []byte("k"), Value: []byte("{not json"),
			Headers: []kgo.RecordHeader{{Key: wire.HeaderAuditActor, Value: []byte("ingest")}, {Key: "bin", Value: []byte{0, 0xff}}}}, "decode"},
	}
	before := map[string]float64{}
	for _, p := range poison {
		before[p.reason] = quarantined(t, p.reason)
	}
	good := record("good", wire.ActionAccepted)
	good.Actor = wire.ActorIngest
	goodKR, err := good.KafkaRecord(tp.Audit)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	// A tombstone (a key with no value) is no record to copy, nor to
	// quarantine.
	all := []*kgo.Record{{Topic: tp.Audit, Key: []byte("generic/gone")}}
	for _, p := range poison {
		all = append(all, p.rec)
	}
	if err := producer.ProduceSync(ctx, append(all, goodKR)...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	defer runSinkUntil(t, brokers, pool, tp.Audit, good.AuditID, "the good record did not reach audit_log: the sink is stuck behind the refused ones")()

	for _, p := range poison {
		var reason, message string
		var value, headers []byte
		err := pool.QueryRow(ctx, `SELECT reason, message, record_value, headers FROM audit_quarantine
WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3`, tp.Audit, p.rec.Partition, p.rec.Offset).Scan(&reason, &message, &value, &headers)
		if err != nil {
			t.Errorf("%s: not in quarantine: %v", p.name, err)
			continue
		}
		if reason != p.reason || message == "" || string(value) != string(p.rec.Value) {
			t.Errorf("%s: quarantined with reason %q, message %q, value %q; want reason %q and the value as produced", p.name, reason, message, value, p.reason)
		}
		var hs []map[string]any
		if err := json.Unmarshal(headers, &hs); err != nil || len(hs) != len(p.rec.Headers) {
			t.Errorf("%s: headers %s (%v), want the record's %d", p.name, headers, err, len(p.rec.Headers))
		}
		if got := quarantined(t, p.reason); got < before[p.reason]+1 {
			t.Errorf("%s: hookstream_audit_sink_quarantined_total{reason=%q} %v, want at least %v", p.name, p.reason, got, before[p.reason]+1)
		}
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_quarantine`).Scan(&rows); err != nil || rows != len(poison) {
		t.Errorf("%d quarantined rows (%v), want %d", rows, err, len(poison))
	}
	var binary string
	if err := pool.QueryRow(ctx, `SELECT h->>'value_base64' FROM audit_quarantine, jsonb_array_elements(headers) h WHERE h->>'key' = 'bin'`).Scan(&binary); err != nil || !strings.HasPrefix(binary, "AP8") {
		t.Errorf("a binary header kept as %q (%v), want base64", binary, err)
	}
}

// TestCopiesOfARecordAreOneRow: the receiver's record reaches audit_log
// three ways — the consumer's WriteIfAbsent of the copy in the event
// record, the sink's copy of the receiver's own publication (at in
// nanoseconds), and the sink's copy of what the relay published from the
// table (at in microseconds) — and stays one row. audit_log's key is
// (audit_id, at) (migration 10): an at that did not come back exactly
// would be a second row. Its nanoseconds end in 999, so a copy rounded
// instead of truncated would differ.
func TestCopiesOfARecordAreOneRow(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	rec := record("e", wire.ActionAccepted)
	rec.Actor = wire.ActorIngest
	rec.At = rec.At.Truncate(time.Microsecond).Add(999 * time.Nanosecond)
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce := func(r *wire.AuditRecord) {
		t.Helper()
		kr, err := r.KafkaRecord(tp.Audit)
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.ProduceSync(ctx, kr).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(rec) // the receiver's
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return (audit.Writer{}).WriteIfAbsent(ctx, tx, rec) }); err != nil {
		t.Fatal(err)
	}
	if n := audittest.Drain(t, newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit}), pool); n != 1 {
		t.Fatalf("relay published %d rows, want 1", n)
	}
	marker := record("marker", wire.ActionAccepted)
	marker.Actor = wire.ActorIngest
	produce(marker) // after both copies: the sink has read them once it is in

	defer runSinkUntil(t, brokers, pool, tp.Audit, marker.AuditID, "the marker did not reach audit_log")()
	rows, err := pool.Query(ctx, `SELECT at FROM audit_log WHERE audit_id = $1`, rec.AuditID)
	if err != nil {
		t.Fatal(err)
	}
	ats, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	if len(ats) != 1 || !ats[0].Equal(rec.At.Truncate(time.Microsecond)) {
		t.Errorf("the record's rows have at %v, want one row at %v", ats, rec.At.Truncate(time.Microsecond))
	}
	var q int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_quarantine`).Scan(&q); err != nil || q != 0 {
		t.Errorf("%d quarantined (%v), want none", q, err)
	}
}

// runSinkUntil runs a sink of topic until the record auditID is in
// audit_log (failing the test with msg after 30 s), and returns what
// stops it.
func runSinkUntil(t *testing.T, brokers []string, pool *pgxpool.Pool, topic, auditID, msg string) (stop func()) {
	t.Helper()
	ctx := context.Background()
	sink, err := audit.NewSink(audit.SinkConfig{Brokers: brokers, Pool: pool, Topic: topic, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = sink.Run(sctx); close(done) }()
	stop = func() { cancel(); <-done }
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE audit_id = $1`, auditID).Scan(&n); err != nil {
			stop()
			t.Fatal(err)
		}
		if n == 1 {
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond) // polling for the state
	}
}

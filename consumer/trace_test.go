package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// attempts are the process spans of eventID, in the order they started,
// once there are n ended; each with its children by name.
func attempts(t *testing.T, exp *tracetest.InMemoryExporter, eventID string, n int) ([]tracetest.SpanStub, []map[string]tracetest.SpanStub) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans := exp.GetSpans()
		var out []tracetest.SpanStub
		for _, s := range spans {
			if strings.HasPrefix(s.Name, "process ") && attrOf(s, "hookstream.event_id") == eventID {
				out = append(out, s)
			}
		}
		if len(out) >= n {
			children := make([]map[string]tracetest.SpanStub, len(out))
			for i, p := range out {
				children[i] = map[string]tracetest.SpanStub{}
				for _, s := range spans {
					if s.Parent.SpanID() == p.SpanContext.SpanID() {
						children[i][s.Name] = s
					}
				}
			}
			return out, children
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d process spans, want %d", eventID, len(out), n)
		}
		time.Sleep(20 * time.Millisecond) // polling for spans, not timing them
	}
}

func attrOf(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestTraceOfEveryAttempt: each attempt at an event is a process span in
// the event's trace — the one its record names, or, for a record without
// a traceparent, the one its first attempt began — with the lookup, the
// handler and the record as children; the audit records and the failure's
// log line carry the trace id.
func TestTraceOfEveryAttempt(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	logs := &testenv.LogBuffer{}

	var failOnce sync.Map
	failOnce.Store("tr-1", true)
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		if _, first := failOnce.LoadAndDelete(ev.EventID); first {
			return errors.New("destination unavailable")
		}
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return consumer.Permanent(errors.New("the handler's context has no span"))
		}
		return nil
	})
	// tr-1 has no traceparent; tr-2 has one, and waits behind tr-1.
	const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tb.produce("generic", "tr-1", "cus_t", 1)
	tb.produceWith("tr-2", "cus_t", map[string]string{wire.HeaderTraceparent: given})
	tb.flush()
	c, err := consumer.New(consumer.Config{
		Brokers: tb.brokers, Pool: tb.pool, Handler: h, Audit: audit.Writer{}, Group: tb.group, Topics: tb.topics,
		Retry: func(string) consumer.RetryPolicy {
			return consumer.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond}
		},
		BlockPoll: 50 * time.Millisecond, Instance: "test", Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		TracerProvider: tp,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM events WHERE customer_id = 'cus_t' AND status = 'PROCESSED'`)

	// tr-1: a trace of its own, which its retry continues.
	spans, children := attempts(t, exp, "tr-1", 2)
	traceID := spans[0].SpanContext.TraceID()
	if spans[0].Parent.IsValid() {
		t.Errorf("tr-1's first attempt has parent %s: its record had no traceparent", spans[0].Parent.SpanID())
	}
	for i, want := range [][2]string{{"record", "failed"}, {"step", "processed"}} {
		s := spans[i]
		if s.SpanContext.TraceID() != traceID || s.SpanKind != trace.SpanKindConsumer ||
			attrOf(s, "hookstream.trigger") != want[0] || attrOf(s, "hookstream.outcome") != want[1] || attrOf(s, "hookstream.attempt") != fmt.Sprint(i+1) {
			t.Errorf("tr-1 attempt %d: trace %s, %v", i+1, s.SpanContext.TraceID(), s.Attributes)
		}
		for _, name := range []string{"lookup", "handle", "record"} {
			if _, ok := children[i][name]; !ok {
				t.Errorf("tr-1 attempt %d has no %s span: %v", i+1, name, children[i])
			}
		}
		// Its PostgreSQL work is in client spans by the database
		// conventions, as the receiver's and the relay's are.
		for name, op := range map[string]string{"lookup": "SELECT", "record": "BATCH"} {
			s := children[i][name]
			if s.SpanKind != trace.SpanKindClient || attrOf(s, "db.system.name") != "postgresql" || attrOf(s, "db.operation.name") != op {
				t.Errorf("tr-1 attempt %d: %s span %s %v, want a client span, postgresql, %s", i+1, name, s.SpanKind, s.Attributes, op)
			}
		}
		if got := attrOf(children[i]["lookup"], "db.query.summary"); got != "SELECT customer_blocks events" {
			t.Errorf("tr-1 attempt %d: lookup's db.query.summary %q", i+1, got)
		}
	}
	// tr-2: every attempt (parked behind tr-1, then drained) in the
	// trace its record named.
	spans, _ = attempts(t, exp, "tr-2", 2)
	for i, want := range []string{"parked", "processed"} {
		if s := spans[i]; s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.SpanID().String() != "00f067aa0ba902b7" ||
			attrOf(s, "hookstream.outcome") != want {
			t.Errorf("tr-2 attempt %d: trace %s parent %s, %v", i+1, s.SpanContext.TraceID(), s.Parent.SpanID(), s.Attributes)
		}
	}

	// Every audit record of the two events names its trace.
	for id, want := range map[string]string{"tr-1": traceID.String(), "tr-2": "4bf92f3577b34da6a3ce929d0e0e4736"} {
		var total, traced int
		if err := tb.pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE detail->>'trace_id' = $2)
FROM audit_log WHERE event_id = $1`, id, want).Scan(&total, &traced); err != nil {
			t.Fatal(err)
		}
		if total < 3 || traced != total {
			t.Errorf("%s: %d of %d audit records have trace_id %s", id, traced, total, want)
		}
	}
	// And the span of the attempt that made it, which the audit relay's
	// publish spans link to.
	for _, id := range []string{"tr-1", "tr-2"} {
		spans, _ := attempts(t, exp, id, 2)
		made := map[string]bool{}
		for _, s := range spans {
			made[s.SpanContext.SpanID().String()] = true
		}
		rows, err := tb.pool.Query(context.Background(), `SELECT coalesce(detail->>'span_id', '') FROM audit_log WHERE event_id = $1 AND actor = 'consumer'`, id)
		if err != nil {
			t.Fatal(err)
		}
		sids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(sids) == 0 {
			t.Errorf("%s: no consumer's audit record", id)
		}
		for _, sid := range sids {
			if !made[sid] {
				t.Errorf("%s: a consumer's audit record has span_id %q, not one of its attempts' %v", id, sid, made)
			}
		}
	}
	if !strings.Contains(logs.String(), `"msg":"event failed; retry scheduled"`) || !strings.Contains(logs.String(), `"trace_id":"`+traceID.String()+`"`) {
		t.Errorf("the failure's log line has no trace_id %s:\n%s", traceID, logs.String())
	}
}

// produceWith writes an event with extra headers.
func (tb *testBundle) produceWith(eventID, customer string, extra map[string]string) {
	tb.t.Helper()
	r := &kgo.Record{Topic: tb.topics.Events, Key: []byte(customer), Value: []byte(`{"seq":0}`),
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderEventID, Value: []byte(eventID)},
			{Key: wire.HeaderSource, Value: []byte("generic")},
			{Key: wire.HeaderCustomerID, Value: []byte(customer)},
		}}
	for k, v := range extra {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	tb.producer.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
		if err != nil {
			tb.t.Errorf("produce: %v", err)
		}
	})
}

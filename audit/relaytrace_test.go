package audit_test

import (
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/audit/audittest"
	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

// decidedBy returns a record whose decision was made by a span of its own
// trace, as a traced receiver or consumer writes it.
func decidedBy(t *testing.T, eventID string, i int) (*wire.AuditRecord, trace.SpanContext) {
	t.Helper()
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], fmt.Sprintf("trace-%010d", i))
	copy(sid[:], fmt.Sprintf("s%07d", i))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
	r := record(eventID, wire.ActionProcessed)
	r.Detail = tracing.WithDecision(nil, sc)
	return r, sc
}

// TestRelayRoundsAreTracesLinkedToDecisions: with a tracer, each round that
// publishes is a trace of its own, "send <audit topic>", linked to the
// spans that made its records' decisions (at most 128 links, the rest
// counted), with the read and the position write as its children.
func TestRelayRoundsAreTracesLinkedToDecisions(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	const linked = 130
	type ids struct {
		trace.TraceID
		trace.SpanID
	}
	want := map[ids]bool{}
	var recs []*wire.AuditRecord
	for i := range linked {
		r, sc := decidedBy(t, fmt.Sprintf("e%d", i), i)
		recs, want[ids{sc.TraceID(), sc.SpanID()}] = append(recs, r), true
	}
	commit(t, pool, recs...)
	commit(t, pool, record("untraced", wire.ActionProcessed)) // no detail.span_id: no link

	exp := tracetest.NewInMemoryExporter()
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp2.Shutdown(t.Context()) })
	relay := newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit, TracerProvider: tp2})
	if n := audittest.Drain(t, relay, pool); n != linked+1 {
		t.Fatalf("published %d, want %d", n, linked+1)
	}

	spans := exp.GetSpans()
	rounds := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		if s.Name == "send "+tp.Audit {
			rounds[s.SpanContext.SpanID()] = s
		}
	}
	if len(rounds) == 0 {
		t.Fatalf("no round span among %d spans", len(spans))
	}
	var published, dropped int64
	links := 0
	for _, s := range rounds {
		if s.Parent.IsValid() {
			t.Errorf("round span has parent %v, want a trace of its own", s.Parent)
		}
		if s.SpanKind != trace.SpanKindProducer {
			t.Errorf("round span kind %v, want producer", s.SpanKind)
		}
		if len(s.Links) > 128 {
			t.Errorf("round span has %d links, want at most 128", len(s.Links))
		}
		for _, l := range s.Links {
			if !want[ids{l.SpanContext.TraceID(), l.SpanContext.SpanID()}] {
				t.Errorf("link to %v, which made no decision in the round", l.SpanContext)
			}
			links++
		}
		published += attr(s.Attributes, "messaging.batch.message_count").AsInt64()
		dropped += attr(s.Attributes, string(tracing.AttrBatchLinksDropped)).AsInt64()
	}
	if published != linked+1 {
		t.Errorf("round spans count %d records, want %d", published, linked+1)
	}
	if links+int(dropped) != linked || dropped == 0 {
		t.Errorf("%d links and %d dropped, want %d in all with some dropped (one round of %d)", links, dropped, linked, linked+1)
	}
	children := map[string]int{}
	for _, s := range spans {
		if _, ok := rounds[s.Parent.SpanID()]; ok && s.Parent.IsValid() {
			children[s.Name]++
		}
	}
	if children["SELECT audit_log"] != len(rounds) || children["UPDATE audit_relay"] != len(rounds) {
		t.Errorf("children of %d rounds: %v, want a read and a position write each", len(rounds), children)
	}
}

func attr(kvs []attribute.KeyValue, key string) attribute.Value {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

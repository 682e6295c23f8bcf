package ingest_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

const providerTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// tracedBundle is a receiver that traces into an in-memory exporter and
// logs JSON lines into a buffer.
type tracedBundle struct {
	*testBundle
	spans *tracetest.InMemoryExporter
	logs  *testenv.LogBuffer
}

func setupTraced(t *testing.T) *tracedBundle {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	logs := &testenv.LogBuffer{}
	tb := setup(t, func(o *setupOpts) {
		o.configure = func(c *ingest.Config) {
			c.TracerProvider = tp
			c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		}
	})
	return &tracedBundle{testBundle: tb, spans: exp, logs: logs}
}

// logLines are the JSON log lines written to logs, decoded.
func logLines(t *testing.T, logs *testenv.LogBuffer) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %s: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// request returns the spans of the request whose server span ended with
// status, waiting for its children (a produce's span ends with its
// promise) until want are there.
func (tb *tracedBundle) request(status int, want ...string) (server tracetest.SpanStub, children map[string]tracetest.SpanStub) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		children = map[string]tracetest.SpanStub{}
		var found bool
		spans := tb.spans.GetSpans()
		for _, s := range spans {
			if s.SpanKind == trace.SpanKindServer && intAttr(s, "http.response.status_code") == int64(status) {
				server, found = s, true
			}
		}
		if found {
			for _, s := range spans {
				if s.Parent.SpanID() == server.SpanContext.SpanID() && s.SpanContext.TraceID() == server.SpanContext.TraceID() {
					children[s.Name] = s
				}
			}
			missing := false
			for _, name := range want {
				_, ok := children[name]
				missing = missing || !ok
			}
			if !missing {
				return server, children
			}
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("no request span with status %d and children %v; spans: %v", status, want, names(spans))
		}
		time.Sleep(10 * time.Millisecond) // polling for spans, not timing them
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func intAttr(s tracetest.SpanStub, key string) int64 { return attr(s, key).AsInt64() }

func strAttr(s tracetest.SpanStub, key string) string { return attr(s, key).AsString() }

// TestTraceContinuesTheProvidersTraceparent: a valid traceparent is the
// parent of the request's span; the event record carries the request
// span's context (and the provider's tracestate) to the consumer, and its
// decision the trace id.
func TestTraceContinuesTheProvidersTraceparent(t *testing.T) {
	t.Parallel()
	tb := setupTraced(t)
	body := genericBody("evt_traced", "cus_1")
	h := signedGeneric(body)
	h.Set("Traceparent", providerTraceparent)
	h.Set("Tracestate", "vendor=abc")
	if status, _, out := tb.post("/webhooks/generic", h, body); status != http.StatusAccepted {
		t.Fatalf("status %d: %s", status, out)
	}
	server, children := tb.request(http.StatusAccepted, "check", "SELECT events", "send "+tb.topics.Events)
	sc := server.SpanContext
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || server.Parent.SpanID().String() != "00f067aa0ba902b7" || !server.Parent.IsRemote() {
		t.Errorf("request span %s in trace %s, parent %s: want the provider's trace", sc.SpanID(), sc.TraceID(), server.Parent.SpanID())
	}
	if server.Name != "POST /webhooks/:source" || strAttr(server, "http.route") != "/webhooks/:source" ||
		strAttr(server, "hookstream.source") != "generic" || strAttr(server, "hookstream.event_id") != "evt_traced" {
		t.Errorf("request span %s %v", server.Name, server.Attributes)
	}
	send := children["send "+tb.topics.Events]
	if send.SpanKind != trace.SpanKindProducer || strAttr(send, "messaging.system") != "kafka" ||
		strAttr(send, "messaging.destination.name") != tb.topics.Events || strAttr(send, "messaging.destination.partition.id") == "" {
		t.Errorf("send span %v", send.Attributes)
	}
	if lookup := children["SELECT events"]; lookup.SpanKind != trace.SpanKindClient || strAttr(lookup, "db.system.name") != "postgresql" {
		t.Errorf("duplicate check span %v", lookup.Attributes)
	}

	recs := tb.events()
	if len(recs) != 1 {
		t.Fatalf("%d events", len(recs))
	}
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	if got := header(recs[0], wire.HeaderTraceparent); got != want {
		t.Errorf("record traceparent %q, want the request span's %q", got, want)
	}
	if got := header(recs[0], wire.HeaderTracestate); got != "vendor=abc" {
		t.Errorf("record tracestate %q", got)
	}
	if a := tb.decision(recs[0]); a.Detail[wire.DetailTraceID] != sc.TraceID().String() || a.Detail[wire.DetailSpanID] != sc.SpanID().String() {
		t.Errorf("decision detail %v, want trace_id %s and span_id %s", a.Detail, sc.TraceID(), sc.SpanID())
	}
}

// TestTraceReplacesAnInvalidTraceparent: a traceparent the W3C rules
// refuse starts a fresh trace, which the record carries instead.
func TestTraceReplacesAnInvalidTraceparent(t *testing.T) {
	t.Parallel()
	for i, bad := range []string{
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper case
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
		"not a traceparent",
	} {
		tb := setupTraced(t)
		body := genericBody("evt_bad_tp", "cus_1")
		h := signedGeneric(body)
		h.Set("Traceparent", bad)
		h.Set("Tracestate", "vendor=abc")
		if status, _, out := tb.post("/webhooks/generic", h, body); status != http.StatusAccepted {
			t.Fatalf("%d: status %d: %s", i, status, out)
		}
		server, _ := tb.request(http.StatusAccepted, "send "+tb.topics.Events)
		sc := server.SpanContext
		if server.Parent.IsValid() || strings.Contains(strings.ToLower(bad), sc.TraceID().String()) {
			t.Errorf("%q: request span's parent %v, trace %s: want a new trace", bad, server.Parent, sc.TraceID())
		}
		r := tb.events()[0]
		if got, want := header(r, wire.HeaderTraceparent), "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01"; got != want {
			t.Errorf("%q: record traceparent %q, want %q", bad, got, want)
		}
		if got := header(r, wire.HeaderTracestate); got != "" {
			t.Errorf("%q: record tracestate %q, want none (it belonged to the refused traceparent)", bad, got)
		}
	}
}

// TestTracingOffPassesTheTraceContextOn: without a tracer the receiver
// makes no span and passes a valid traceparent (and its tracestate) on
// unchanged; an invalid one is dropped, not forwarded to destinations.
func TestTracingOffPassesTheTraceContextOn(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for i, c := range []struct{ traceparent, tracestate, wantTP, wantTS string }{
		{providerTraceparent, "vendor=abc", providerTraceparent, "vendor=abc"},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "vendor=abc", "", ""},
		{"nonsense", "", "", ""},
		{providerTraceparent, "vendor=" + strings.Repeat("x", 600), providerTraceparent, ""},
	} {
		body := genericBody("evt_off_"+string(rune('a'+i)), "cus_1")
		h := signedGeneric(body)
		h.Set("Traceparent", c.traceparent)
		if c.tracestate != "" {
			h.Set("Tracestate", c.tracestate)
		}
		if status, _, out := tb.post("/webhooks/generic", h, body); status != http.StatusAccepted {
			t.Fatalf("%d: status %d: %s", i, status, out)
		}
	}
	recs := tb.events()
	if len(recs) != 4 {
		t.Fatalf("%d events", len(recs))
	}
	byID := map[string]*kgo.Record{}
	for _, r := range recs {
		byID[header(r, wire.HeaderEventID)] = r
	}
	for i, want := range [][2]string{{providerTraceparent, "vendor=abc"}, {"", ""}, {"", ""}, {providerTraceparent, ""}} {
		r := byID["evt_off_"+string(rune('a'+i))]
		if tp, ts := header(r, wire.HeaderTraceparent), header(r, wire.HeaderTracestate); tp != want[0] || ts != want[1] {
			t.Errorf("%d: record traceparent %q, tracestate %q; want %q, %q", i, tp, ts, want[0], want[1])
		}
		if id := tb.decision(r).Detail[wire.DetailTraceID]; id != nil {
			t.Errorf("%d: decision has trace_id %v with tracing off", i, id)
		}
	}
}

// TestTraceOfARejection: the rejection's span says why, its record is
// written in a child span, and the record and the log line carry the
// trace id.
func TestTraceOfARejection(t *testing.T) {
	t.Parallel()
	tb := setupTraced(t)
	body := genericBody("evt_forged", "cus_1")
	h := jsonHeaders("X-Signature", strings.Repeat("0", 64), "X-Request-Id", "req-traced-forged")
	if status, _, _ := tb.post("/webhooks/generic", h, body); status != http.StatusUnauthorized {
		t.Fatalf("status %d", status)
	}
	server, children := tb.request(http.StatusUnauthorized, "check", "send "+tb.topics.Audit)
	traceID := server.SpanContext.TraceID().String()
	if server.Status.Code.String() == "Error" {
		t.Error("a 401 is an error status of the request span; the HTTP conventions keep 4xx for the client")
	}
	if got := strAttr(children["check"], "hookstream.reason"); got != ingest.CodeSignatureInvalid {
		t.Errorf("check span reason %q", got)
	}
	audits := tb.auditFor("req-traced-forged")
	if len(audits) != 1 || audits[0].Detail[wire.DetailTraceID] != traceID {
		t.Errorf("REJECTED records %+v, want one with trace_id %s", audits, traceID)
	}
	var logged bool
	for _, l := range logLines(t, tb.logs) {
		if l["msg"] == "request rejected" && l["trace_id"] == traceID {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no log line of the rejection with trace_id %s: %v", traceID, logLines(t, tb.logs))
	}
}

// TestTraceOfADuplicate: the DUPLICATE decision is produced in a child
// span of the request, and records the trace id; a re-driven event's
// produce is one too.
func TestTraceOfADuplicate(t *testing.T) {
	t.Parallel()
	tb := setupTraced(t)
	tb.setStatus("generic", "evt_done", ingest.StatusProcessed)
	tb.setStatus("generic", "evt_failed", ingest.StatusFailed)
	body := genericBody("evt_done", "cus_1")
	h := signedGeneric(body)
	h.Set("X-Request-Id", "req-traced-dup")
	if status, _, _ := tb.post("/webhooks/generic", h, body); status != http.StatusConflict {
		t.Fatalf("status %d", status)
	}
	server, children := tb.request(http.StatusConflict, "SELECT events", "send "+tb.topics.Audit)
	if got := strAttr(children["SELECT events"], "hookstream.event.status"); got != string(ingest.StatusProcessed) {
		t.Errorf("duplicate check span status %q", got)
	}
	audits := tb.auditFor("req-traced-dup")
	if len(audits) != 1 || audits[0].Detail[wire.DetailTraceID] != server.SpanContext.TraceID().String() {
		t.Errorf("DUPLICATE records %+v, want one with trace_id %s", audits, server.SpanContext.TraceID())
	}

	body = genericBody("evt_failed", "cus_1")
	if status, _, _ := tb.post("/webhooks/generic", signedGeneric(body), body); status != http.StatusAccepted {
		t.Fatalf("re-sent failed event: status %d", status)
	}
	server, _ = tb.request(http.StatusAccepted, "send "+tb.topics.Events)
	r := tb.events()[0]
	if got := header(r, wire.HeaderTraceparent); !strings.Contains(got, server.SpanContext.SpanID().String()) || header(r, wire.HeaderRedrive) != "true" {
		t.Errorf("re-driven record traceparent %q (redrive %q), want the request span's", got, header(r, wire.HeaderRedrive))
	}
}

// TestTraceBoundsClientAttributes: the request span's url.path and
// user_agent.original, which anyone can make megabytes long, are cut to
// tracing.MaxAttrLen bytes, at a UTF-8 boundary.
func TestTraceBoundsClientAttributes(t *testing.T) {
	t.Parallel()
	tb := setupTraced(t)
	path := "/webhooks/x" + strings.Repeat("é", 2000) // 2-byte runes: 11 bytes, then 4,000
	ua := "ab" + strings.Repeat("€", 2000)            // 3-byte runes
	h := jsonHeaders("User-Agent", ua)
	status, _, _ := tb.post(path, h, genericBody("evt_long", "cus_1"))
	server, _ := tb.request(status)
	for key, sent := range map[string]string{"url.path": path, "user_agent.original": ua} {
		got := strAttr(server, key)
		if len(got) > tracing.MaxAttrLen || len(got) < tracing.MaxAttrLen-3 || !utf8.ValidString(got) || !strings.HasPrefix(sent, got) {
			t.Errorf("%s: %d bytes (valid UTF-8 %v), want a prefix of what was sent of at most %d, cut at a rune", key, len(got), utf8.ValidString(got), tracing.MaxAttrLen)
		}
	}
}

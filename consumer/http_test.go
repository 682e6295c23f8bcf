package consumer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

func TestDestinationsClassifyResponses(t *testing.T) {
	t.Parallel()
	var got *http.Request
	var gotBody []byte
	status, retryAfter := 0, ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		buf := make([]byte, 64)
		n, _ := r.Body.Read(buf)
		gotBody = buf[:n]
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	d := NewDestinations([]sources.Source{{Name: "s", Destination: &sources.Destination{URL: srv.URL, Timeout: time.Second}}}, srv.Client(), 0)
	ev := &Event{Source: "s", EventID: "evt_1", Body: []byte(`{"a":1}`), Attempt: 2,
		Headers: map[string]string{"event-id": "evt_1", "customer-id": "c", "content-type": "application/json"}}

	cases := []struct {
		status     int
		retryAfter string
		wantErr    bool
		permanent  bool
		after      time.Duration
	}{
		{200, "", false, false, 0},
		{204, "", false, false, 0},
		{400, "", true, true, 0},
		{410, "", true, true, 0},
		{408, "", true, false, 0},
		{429, "7", true, false, 7 * time.Second},
		{500, "", true, false, 0},
		{503, "2", true, false, 2 * time.Second},
	}
	for _, c := range cases {
		status, retryAfter = c.status, c.retryAfter
		err := d.Deliver(context.Background(), ev)
		if (err != nil) != c.wantErr || (err != nil && Retryable(err) == c.permanent) || retryAfterOf(err) != c.after {
			t.Errorf("status %d: err %v (retryable %v, after %s)", c.status, err, Retryable(err), retryAfterOf(err))
		}
	}
	if got.Header.Get("Idempotency-Key") != "evt_1" || got.Header.Get("X-Hookstream-Customer-Id") != "c" || got.Header.Get("X-Hookstream-Attempt") != "2" || string(gotBody) != `{"a":1}` {
		t.Errorf("request headers %v body %q", got.Header, gotBody)
	}
	// A source without a destination is processed by doing nothing.
	if err := d.Deliver(context.Background(), &Event{Source: "other"}); err != nil {
		t.Error(err)
	}
	// An unreachable destination is transient.
	srv.Close()
	status = 200
	if err := d.Deliver(context.Background(), ev); err == nil || !Retryable(err) {
		t.Errorf("closed server: %v", err)
	}
}

func retryAfterOf(err error) time.Duration {
	if err == nil {
		return 0
	}
	return retryAfter(err)
}

// TestDestinationsTraceTheCall: with the attempt's span in ctx the call
// is a client span by the HTTP conventions (its URL redacted) and the
// destination receives that span's context; without one, the event's
// own trace context as it came.
func TestDestinationsTraceTheCall(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got http.Header
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		w.WriteHeader(status)
		mu.Unlock()
	}))
	defer srv.Close()
	d := NewDestinations([]sources.Source{{Name: "s", Destination: &sources.Destination{URL: srv.URL + "/hooks?token=s3cr3t", Timeout: time.Second}}}, srv.Client(), 0)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev := &Event{Source: "s", EventID: "evt_1", Body: []byte(`{}`), Attempt: 1,
		Headers: map[string]string{wire.HeaderEventID: "evt_1", wire.HeaderTraceparent: tp, wire.HeaderTracestate: "vendor=abc"}}

	if err := d.Deliver(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if got.Get("Traceparent") != tp || got.Get("Tracestate") != "vendor=abc" || got.Get("X-Hookstream-Traceparent") != "" {
		t.Errorf("untraced call's headers %v", got)
	}

	exp := tracetest.NewInMemoryExporter()
	tp1 := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp1.Shutdown(context.Background()) }()
	ctx, attempt := tp1.Tracer("test").Start(tracing.Extract(context.Background(), tp, "vendor=abc"), "process")
	for _, code := range []int{200, 500} {
		mu.Lock()
		status = code
		mu.Unlock()
		exp.Reset()
		err := d.Deliver(ctx, ev)
		if (err != nil) != (code >= 400) {
			t.Fatalf("status %d: %v", code, err)
		}
		spans := exp.GetSpans()
		if len(spans) != 1 {
			t.Fatalf("status %d: spans %v", code, spans)
		}
		s := spans[0]
		attrs := map[string]string{}
		for _, kv := range s.Attributes {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if s.Name != "POST" || s.SpanKind != trace.SpanKindClient || s.Parent.SpanID() != attempt.SpanContext().SpanID() ||
			attrs["http.request.method"] != "POST" || attrs["http.response.status_code"] != strconv.Itoa(code) ||
			attrs["server.address"] != "127.0.0.1" || strings.Contains(attrs["url.full"], "s3cr3t") || !strings.Contains(attrs["url.full"], "/hooks") {
			t.Errorf("status %d: span %s %v, parent %s", code, s.Name, attrs, s.Parent.SpanID())
		}
		if (s.Status.Code == codes.Error) != (code >= 400) || (code >= 400 && attrs["error.type"] != "500") {
			t.Errorf("status %d: span status %v, error.type %q", code, s.Status, attrs["error.type"])
		}
		want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext.SpanID().String() + "-01"
		if got.Get("Traceparent") != want || got.Get("Tracestate") != "vendor=abc" {
			t.Errorf("status %d: destination got traceparent %q tracestate %q, want %q (the call's span)", code, got.Get("Traceparent"), got.Get("Tracestate"), want)
		}
	}
}

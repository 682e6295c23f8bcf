package e2e_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/schemas"
)

// destination answers each event's calls from a script (the last answer
// repeats) and keeps the traceparent of every call.
type destination struct {
	mu      sync.Mutex
	answers map[string][]int
	calls   map[string][]string // event id -> traceparents
}

func (d *destination) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := r.Header.Get("Idempotency-Key")
	d.calls[id] = append(d.calls[id], r.Header.Get("Traceparent"))
	status := 200
	if a := d.answers[id]; len(a) > 0 {
		status = a[0]
		if len(a) > 1 {
			d.answers[id] = a[1:]
		}
	}
	w.WriteHeader(status)
}

func (d *destination) script(id string, statuses ...int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers[id] = statuses
}

func (d *destination) callsOf(id string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls[id]...)
}

type tracedStack struct {
	*stack
	spans *tracetest.InMemoryExporter
	dest  *destination
}

// startTraced runs a traced receiver and a traced consumer delivering to
// a destination over HTTP, as the binary does.
func startTraced(t *testing.T) *tracedStack {
	t.Helper()
	brokers := testenv.Kafka(t)
	st := &stack{t: t, brokers: brokers, topics: testenv.Topics(t, brokers), client: http.DefaultClient}
	st.pool = testenv.PostgresPool(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	dest := &destination{answers: map[string][]int{}, calls: map[string][]string{}}
	ds := httptest.NewServer(dest)
	t.Cleanup(ds.Close)

	schema, err := fs.ReadFile(schemas.JSON(), "generic.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	src := sources.Generic([]string{secret}, schema)
	src.Destination = &sources.Destination{URL: ds.URL + "/hooks", Timeout: 5 * time.Second}
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	dups := ingest.NewPostgresDuplicates(st.pool, ingest.PostgresDuplicatesConfig{})
	t.Cleanup(dups.Close)
	log := slog.New(slog.DiscardHandler)
	rcv, err := ingest.New(ingest.Config{Sources: []sources.Source{src}, Producer: producer, Duplicates: dups, Topics: st.topics,
		Instance: "e2e-ingest", Logger: log, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(httpserver.New(httpserver.Config{Routes: []func(gin.IRouter){rcv.Register}, Logger: log}).Handler())
	t.Cleanup(hs.Close)
	st.url = hs.URL

	st.group = "e2e-traced-" + fmt.Sprint(time.Now().UnixNano())
	c, err := consumer.New(consumer.Config{Brokers: brokers, Pool: st.pool, Deliverer: consumer.NewDestinations([]sources.Source{src}, nil, 4),
		Audit: audit.Writer{}, Group: st.group, Topics: st.topics, Instance: "e2e-consumer", Logger: log, BlockPoll: 50 * time.Millisecond,
		Retry: func(string) consumer.RetryPolicy {
			return consumer.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
		},
		TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &tracedStack{stack: st, spans: exp, dest: dest}
}

// send posts the generic event eventID with traceparent ("" for none).
func (st *tracedStack) send(eventID, customer, traceparent string) int {
	st.t.Helper()
	body := fmt.Sprintf(`{"event_id":%q,"customer_id":%q,"event_type":"t","payload":{}}`, eventID, customer)
	req, _ := http.NewRequest(http.MethodPost, st.url+"/webhooks/generic", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	req.Header.Set("X-Signature", hex.EncodeToString(m.Sum(nil)))
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	resp, err := st.client.Do(req)
	if err != nil {
		st.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (st *tracedStack) status(eventID string) string {
	var s string
	err := st.pool.QueryRow(context.Background(), `SELECT status FROM events WHERE source = 'generic' AND event_id = $1`, eventID).Scan(&s)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		st.t.Fatal(err)
	}
	return s
}

// spansOf waits until cond holds of the spans about eventID.
func (st *tracedStack) spansOf(eventID string, what string, cond func([]tracetest.SpanStub) bool) []tracetest.SpanStub {
	st.t.Helper()
	var out []tracetest.SpanStub
	st.eventually(30*time.Second, what, func() (bool, error) {
		out = nil
		all := st.spans.GetSpans()
		ids := map[trace.SpanID]bool{}
		for _, s := range all {
			if attrOf(s, "hookstream.event_id") == eventID {
				out = append(out, s)
				ids[s.SpanContext.SpanID()] = true
			}
		}
		// and their children (lookup, POST, record)
		for _, s := range all {
			if ids[s.Parent.SpanID()] && attrOf(s, "hookstream.event_id") == "" {
				out = append(out, s)
			}
		}
		return cond(out), nil
	})
	slices.SortFunc(out, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	return out
}

func attrOf(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func count(spans []tracetest.SpanStub, f func(tracetest.SpanStub) bool) int {
	n := 0
	for _, s := range spans {
		if f(s) {
			n++
		}
	}
	return n
}

// receiveTrace is the trace of the request that accepted eventID: the
// first one (spans are in the order they started).
func receiveTrace(spans []tracetest.SpanStub) (trace.TraceID, trace.SpanID) {
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindServer && attrOf(s, "http.response.status_code") == "202" {
			return s.SpanContext.TraceID(), s.SpanContext.SpanID()
		}
	}
	return trace.TraceID{}, trace.SpanID{}
}

// checkOneTrace fails unless every attempt at eventID and every call to
// the destination is in the trace of the request that accepted it: the
// first attempt's parent is that request's span, each call's span is a
// child of an attempt, and the destination received each call's span.
func (st *tracedStack) checkOneTrace(eventID string, spans []tracetest.SpanStub) trace.TraceID {
	st.t.Helper()
	tid, server := receiveTrace(spans)
	if !tid.IsValid() {
		st.t.Fatalf("%s: no request span", eventID)
	}
	attemptIDs, callIDs := map[trace.SpanID]bool{}, map[string]bool{}
	var firstAttemptParent trace.SpanID
	for _, s := range spans {
		if s.SpanContext.TraceID() != tid {
			continue
		}
		if strings.HasPrefix(s.Name, "process ") {
			if len(attemptIDs) == 0 {
				firstAttemptParent = s.Parent.SpanID()
			}
			attemptIDs[s.SpanContext.SpanID()] = true
		}
	}
	for _, s := range spans {
		if s.Name == "POST" && s.SpanContext.TraceID() == tid && attemptIDs[s.Parent.SpanID()] {
			callIDs[s.SpanContext.SpanID().String()] = true
		}
	}
	if firstAttemptParent != server {
		st.t.Errorf("%s: the first attempt's parent is %s, want the request span %s", eventID, firstAttemptParent, server)
	}
	calls := st.dest.callsOf(eventID)
	if len(calls) == 0 {
		st.t.Errorf("%s: the destination was not called", eventID)
	}
	for i, tp := range calls {
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[1] != tid.String() || !callIDs[parts[2]] {
			st.t.Errorf("%s: call %d carried traceparent %q; want trace %s and a POST span of an attempt (%v)", eventID, i+1, tp, tid, callIDs)
		}
	}
	return tid
}

// TestOneTraceFromReceiveToDestination: the receive span, every attempt
// and every destination call of an event share one trace: for a new
// event, for one retried after a failure, for one replayed by an operator
// after it went DEAD, and for one re-sent by its provider after it went
// DEAD (the re-send's own trace links to the event's).
func TestOneTraceFromReceiveToDestination(t *testing.T) {
	t.Parallel()
	st := startTraced(t)
	st.dest.script("evt_retry", 500, 200)
	st.dest.script("evt_replay", 400)
	st.dest.script("evt_resent", 400)
	const provider = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, c := range [][3]string{{"evt_new", "cus_a", provider}, {"evt_retry", "cus_b", ""}, {"evt_replay", "cus_c", ""}, {"evt_resent", "cus_d", ""}} {
		if got := st.send(c[0], c[1], c[2]); got != http.StatusAccepted {
			t.Fatalf("%s: %d", c[0], got)
		}
	}
	st.eventually(time.Minute, "evt_new and evt_retry processed, evt_replay and evt_resent dead", func() (bool, error) {
		return st.status("evt_new") == "PROCESSED" && st.status("evt_retry") == "PROCESSED" &&
			st.status("evt_replay") == "DEAD" && st.status("evt_resent") == "DEAD", nil
	})

	// A new event, continuing its provider's trace.
	spans := st.spansOf("evt_new", "evt_new's attempt ended", func(s []tracetest.SpanStub) bool {
		return count(s, func(s tracetest.SpanStub) bool { return attrOf(s, "hookstream.outcome") == "processed" }) == 1
	})
	if tid := st.checkOneTrace("evt_new", spans); tid.String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("evt_new in trace %s, want the provider's", tid)
	}

	// Retried: two attempts, two calls, one trace.
	spans = st.spansOf("evt_retry", "evt_retry's two attempts ended", func(s []tracetest.SpanStub) bool {
		return count(s, func(s tracetest.SpanStub) bool { return attrOf(s, "hookstream.outcome") != "" }) == 2
	})
	st.checkOneTrace("evt_retry", spans)
	if n := len(st.dest.callsOf("evt_retry")); n != 2 {
		t.Errorf("evt_retry: %d calls, want 2", n)
	}

	// Replayed by an operator after it went DEAD.
	st.dest.script("evt_replay", 200)
	if err := consumer.Replay(context.Background(), consumer.ReplayConfig{Pool: st.pool, Audit: audit.Writer{}, Instance: "e2e"}, "generic", "evt_replay", "fixed"); err != nil {
		t.Fatal(err)
	}
	st.eventually(time.Minute, "evt_replay processed", func() (bool, error) { return st.status("evt_replay") == "PROCESSED", nil })
	spans = st.spansOf("evt_replay", "evt_replay's replayed attempt ended", func(s []tracetest.SpanStub) bool {
		return count(s, func(s tracetest.SpanStub) bool { return attrOf(s, "hookstream.outcome") == "processed" }) == 1
	})
	tid := st.checkOneTrace("evt_replay", spans)
	if n := len(st.dest.callsOf("evt_replay")); n != 2 {
		t.Errorf("evt_replay: %d calls, want 2 (the dead one, the replayed one)", n)
	}
	var rows, traced int
	if err := st.pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE detail->>'trace_id' = $2)
FROM audit_log WHERE event_id = $1 AND actor <> 'admin'`, "evt_replay", tid.String()).Scan(&rows, &traced); err != nil || rows < 6 || traced != rows {
		t.Errorf("evt_replay: %d of %d audit records (not the operator's) have trace_id %s (%v)", traced, rows, tid, err)
	}

	// Re-sent by its provider after it went DEAD: the re-send is a trace of
	// its own, linked to the event's, and the event's next attempt is in
	// the event's trace.
	st.dest.script("evt_resent", 200)
	const resend = "00-11111111111111111111111111111111-2222222222222222-01"
	if got := st.send("evt_resent", "cus_d", resend); got != http.StatusAccepted {
		t.Fatalf("evt_resent re-sent: %d", got)
	}
	st.eventually(time.Minute, "evt_resent processed", func() (bool, error) { return st.status("evt_resent") == "PROCESSED", nil })
	spans = st.spansOf("evt_resent", "evt_resent's re-driven attempt ended", func(s []tracetest.SpanStub) bool {
		return count(s, func(s tracetest.SpanStub) bool { return attrOf(s, "hookstream.outcome") == "processed" }) == 1
	})
	tid = st.checkOneTrace("evt_resent", spans)
	var linked bool
	for _, s := range spans {
		if s.SpanContext.TraceID().String() == "11111111111111111111111111111111" && attrOf(s, "hookstream.outcome") == "requeued" {
			for _, l := range s.Links {
				linked = linked || l.SpanContext.TraceID() == tid
			}
		}
	}
	if !linked {
		t.Errorf("evt_resent: no attempt in the re-send's trace links to the event's trace %s", tid)
	}
	if calls := st.dest.callsOf("evt_resent"); len(calls) != 2 || !strings.Contains(calls[1], tid.String()) {
		t.Errorf("evt_resent: calls %v, want 2 in trace %s", calls, tid)
	}
}

package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// scriptedProducer stands in for the broker in the flight's unit tests. As
// franz-go does, it calls promises in order on one goroutine of its own,
// never inside Produce. It acknowledges at once unless told to refuse
// TryProduce for a topic (a full buffer), to fail a topic's records, or to
// hold a topic's promises until the test releases them.
type scriptedProducer struct {
	mu       sync.Mutex
	full     string   // topic for which TryProduce fails with kgo.ErrMaxBuffered
	fail     string   // topic whose records fail with errScriptedFailure
	hold     string   // topic whose promises are kept, not called
	calls    []string // "try events", "produce audit", ...
	held     []func()
	stored   []*kgo.Record
	next     int64
	promises chan func()
}

func newScriptedProducer(t *testing.T) *scriptedProducer {
	p := &scriptedProducer{promises: make(chan func(), 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range p.promises {
			f()
		}
	}()
	t.Cleanup(func() {
		close(p.promises)
		<-done
	})
	return p
}

func (p *scriptedProducer) TryProduce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	p.calls = append(p.calls, "try "+r.Topic)
	full := p.full == r.Topic
	p.mu.Unlock()
	if full {
		p.promises <- func() { promise(r, kgo.ErrMaxBuffered) }
		return
	}
	p.deliver(r, promise)
}

func (p *scriptedProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	p.calls = append(p.calls, "produce "+r.Topic)
	p.mu.Unlock()
	p.deliver(r, promise)
}

var errScriptedFailure = errors.New("scripted: the broker refused the record")

func (p *scriptedProducer) deliver(r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	fail := r.Topic == p.fail
	p.mu.Unlock()
	if fail {
		p.promises <- func() { promise(r, errScriptedFailure) }
		return
	}
	ack := func() {
		p.mu.Lock()
		r.Partition, r.Offset = 3, p.next
		p.next++
		p.stored = append(p.stored, r)
		p.mu.Unlock()
		promise(r, nil)
	}
	p.mu.Lock()
	hold := r.Topic == p.hold
	if hold {
		p.held = append(p.held, func() { p.promises <- ack })
	}
	p.mu.Unlock()
	if !hold {
		p.promises <- ack
	}
}

// release acknowledges the held records, late, and returns once their
// promises have run.
func (p *scriptedProducer) release() {
	p.mu.Lock()
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for _, ack := range held {
		ack()
	}
	ran := make(chan struct{})
	p.promises <- func() { close(ran) }
	<-ran
}

// snapshot returns the calls so far, the records stored on the audit
// topic, and the decisions that travelled in the stored events' headers.
func (p *scriptedProducer) snapshot() (calls []string, audits, decisions []wire.AuditRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.stored {
		switch r.Topic {
		case "events":
			var v []byte
			for _, h := range r.Headers {
				if h.Key == wire.HeaderAudit {
					v = h.Value
				}
			}
			a, err := wire.AuditFromHeader(v)
			if err != nil {
				panic(fmt.Sprintf("event without its decision: %v", err))
			}
			decisions = append(decisions, *a)
		case "audit":
			var a wire.AuditRecord
			if err := json.Unmarshal(r.Value, &a); err != nil {
				panic(err)
			}
			audits = append(audits, a)
		}
	}
	return slices.Clone(p.calls), audits, decisions
}

const flightSecret = "flight-test-secret"

// flightConfig is the receiver of the flight tests, on p.
func flightConfig(p *scriptedProducer, dups DuplicateChecker, produceTimeout time.Duration) Config {
	return Config{
		Producer:       p,
		Duplicates:     dups,
		Topics:         wire.Topics{Events: "events", Audit: "audit"},
		ProduceTimeout: produceTimeout,
	}
}

// postGeneric sends one signed generic event through a receiver on p and
// returns the reply.
func postGeneric(t *testing.T, p *scriptedProducer, dups DuplicateChecker, produceTimeout time.Duration) *httptest.ResponseRecorder {
	t.Helper()
	return postTo(genericEngine(t, flightSecret, flightConfig(p, dups, produceTimeout)), true)
}

// postTo sends the flight tests' event to engine, signed or not.
func postTo(engine *gin.Engine, signed bool) *httptest.ResponseRecorder {
	body := []byte(`{"event_id":"evt_f","customer_id":"cus_f","event_type":"t","payload":{}}`)
	sig := ""
	if signed {
		sig = genericSignature(flightSecret, body)
	}
	w := httptest.NewRecorder()
	engine.ServeHTTP(w, genericRequest(body, sig))
	return w
}

// wantDecision checks that exactly one event was stored and that it
// carries its decision, action, about itself.
func wantDecision(t *testing.T, decisions []wire.AuditRecord, action wire.Action) {
	t.Helper()
	if len(decisions) != 1 {
		t.Fatalf("%d events stored, want 1", len(decisions))
	}
	if a := decisions[0]; a.Action != action || a.EventID != "evt_f" || a.Source != "generic" || a.CustomerID != "cus_f" ||
		a.HTTPStatus != http.StatusAccepted || a.Partition != nil || a.Offset != nil {
		t.Errorf("the event's decision is %+v, want %s about evt_f (without partition and offset)", a, action)
	}
}

// asyncChecker answers every look-up with status, from a goroutine of its
// own, as PostgresDuplicates' worker does.
type asyncChecker struct{ status Status }

func (c asyncChecker) Lookup(_, _ string, fn func(Status, error)) {
	go fn(c.status, nil)
}

// A new event takes one produce: the event, carrying its ACCEPTED record.
func TestFlightCommonPath(t *testing.T) {
	for _, dups := range []DuplicateChecker{nil, asyncChecker{StatusUnknown}} {
		p := newScriptedProducer(t)
		if w := postGeneric(t, p, dups, time.Second); w.Code != http.StatusAccepted {
			t.Fatalf("status %d %s", w.Code, w.Body)
		}
		calls, audits, decisions := p.snapshot()
		if want := []string{"try events"}; !slices.Equal(calls, want) {
			t.Errorf("calls %v, want %v", calls, want)
		}
		if len(audits) != 0 {
			t.Errorf("audit records %+v, want none on the audit topic", audits)
		}
		wantDecision(t, decisions, wire.ActionAccepted)
	}
}

// A known event leaves the flight for the handler's step-by-step path.
func TestFlightKnownEventToHandler(t *testing.T) {
	p := newScriptedProducer(t)
	if w := postGeneric(t, p, asyncChecker{StatusProcessed}, time.Second); w.Code != http.StatusConflict {
		t.Fatalf("status %d %s, want 409", w.Code, w.Body)
	}
	calls, audits, decisions := p.snapshot()
	if want := []string{"produce audit"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if len(decisions) != 0 || len(audits) != 1 || audits[0].Action != wire.ActionDuplicate {
		t.Errorf("%d events, audit records %+v; want none and one DUPLICATE", len(decisions), audits)
	}
}

// A full buffer sends the flight back to the handler, which waits for
// room (Produce) instead of failing the request; the event it produces
// carries its decision as well.
func TestFlightFullBufferFallsBackToHandler(t *testing.T) {
	p := newScriptedProducer(t)
	p.full = "events"
	if w := postGeneric(t, p, nil, time.Second); w.Code != http.StatusAccepted {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	calls, audits, decisions := p.snapshot()
	if want := []string{"try events", "produce events"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if len(audits) != 0 {
		t.Errorf("audit records %+v, want none on the audit topic", audits)
	}
	wantDecision(t, decisions, wire.ActionAccepted)
}

// An event not acknowledged in time is answered 503, and its REJECTED
// record is sent without waiting. Acknowledged late, the event is in Kafka
// with its ACCEPTED record: the ambiguous outcome the consumer's dedupe
// absorbs when the provider retries.
func TestFlightEventTimeout(t *testing.T) {
	p := newScriptedProducer(t)
	p.hold = "events"
	w := postGeneric(t, p, nil, 10*time.Millisecond)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", w.Code, w.Body)
	}
	p.release()
	calls, audits, decisions := p.snapshot()
	if want := []string{"try events", "try audit"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	wantDecision(t, decisions, wire.ActionAccepted)
	if len(audits) != 1 || audits[0].Action != wire.ActionRejected || audits[0].HTTPStatus != http.StatusServiceUnavailable {
		t.Errorf("audit records %+v, want only the 503's REJECTED", audits)
	}
}

// TestNoTwoXXWithoutDurableDecision: with an audit topic that never
// acknowledges, a new event is still answered 202 as soon as the event is
// acknowledged, for its decision travels with it; a duplicate's decision
// has no event to travel with, so it is answered 503 with Retry-After,
// never 409 or 202, and counted. (Before, a new event's 202 went out while
// its audit record was unacknowledged, and a duplicate got its 409.)
func TestNoTwoXXWithoutDurableDecision(t *testing.T) {
	p := newScriptedProducer(t)
	p.hold = "audit"
	if w := postGeneric(t, p, nil, 10*time.Millisecond); w.Code != http.StatusAccepted {
		t.Fatalf("new event: status %d %s, want 202", w.Code, w.Body)
	}
	calls, _, decisions := p.snapshot()
	if want := []string{"try events"}; !slices.Equal(calls, want) {
		t.Errorf("new event: calls %v, want %v", calls, want)
	}
	wantDecision(t, decisions, wire.ActionAccepted)

	for _, st := range []Status{StatusProcessed, StatusProcessing, StatusParked} {
		before := testutil.ToFloat64(auditFailuresTotal.WithLabelValues(auditKindDuplicate))
		w := postGeneric(t, p, asyncChecker{st}, 10*time.Millisecond)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "5" {
			t.Errorf("duplicate of a %s event: status %d, Retry-After %q (%s); want 503 with Retry-After 5",
				st, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		if got := testutil.ToFloat64(auditFailuresTotal.WithLabelValues(auditKindDuplicate)) - before; got != 1 {
			t.Errorf("duplicate of a %s event: %v failures counted, want 1", st, got)
		}
	}
	p.release() // the DUPLICATE records land late: nothing else happens
	if _, _, decisions := p.snapshot(); len(decisions) != 1 {
		t.Errorf("%d events stored, want only the new one", len(decisions))
	}
}

// logLines keeps the messages of the log records it handles.
type logLines struct {
	mu    sync.Mutex
	lines []slog.Record
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Clone())
	return nil
}

// failures returns the "audit record not published" lines, as text.
func (l *logLines) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.lines {
		if r.Message != "audit record not published" {
			continue
		}
		var b bytes.Buffer
		_ = slog.NewTextHandler(&b, nil).Handle(context.Background(), r)
		out = append(out, b.String())
	}
	return out
}

// A rejection whose audit record fails is still answered, and the failure
// is counted every time and logged at most once per interval, with the
// number not logged since the last line.
func TestRejectionAuditFailureCountedAndLogged(t *testing.T) {
	p := newScriptedProducer(t)
	p.fail = "audit"
	logs := &logLines{}
	cfg := flightConfig(p, nil, time.Second)
	cfg.Logger = slog.New(logs)
	r, engine := genericReceiver(t, flightSecret, cfg)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r.auditFailures.now = func() time.Time { return now }
	counted := func() float64 { return testutil.ToFloat64(auditFailuresTotal.WithLabelValues(auditKindRejected)) }
	before := counted()

	for range 3 {
		if w := postTo(engine, false); w.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned: status %d %s, want 401", w.Code, w.Body)
		}
	}
	if got := counted() - before; got != 3 {
		t.Errorf("%v failures counted, want 3", got)
	}
	if lines := logs.failures(); len(lines) != 1 {
		t.Fatalf("%d lines logged within the interval, want 1: %q", len(lines), lines)
	}
	now = now.Add(auditFailureLogInterval)
	if w := postTo(engine, false); w.Code != http.StatusUnauthorized {
		t.Fatalf("unsigned: status %d %s, want 401", w.Code, w.Body)
	}
	lines := logs.failures()
	if len(lines) != 2 || !strings.Contains(lines[1], "not_logged_since_last=2") || !strings.Contains(lines[1], "kind=rejected") {
		t.Errorf("lines after the interval %q, want a second one saying 2 were not logged", lines)
	}
}

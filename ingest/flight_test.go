package ingest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// scriptedProducer stands in for the broker in the flight's unit tests. As
// franz-go does, it calls promises in order on one goroutine of its own,
// never inside Produce. It acknowledges at once unless told to refuse
// TryProduce for a topic (a full buffer) or to hold a topic's promises
// until the test releases them.
type scriptedProducer struct {
	mu       sync.Mutex
	full     string   // topic for which TryProduce fails with kgo.ErrMaxBuffered
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

func (p *scriptedProducer) deliver(r *kgo.Record, promise func(*kgo.Record, error)) {
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

func (p *scriptedProducer) snapshot() (calls []string, audits []wire.AuditRecord, events int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.stored {
		if r.Topic != "events" {
			continue
		}
		events++
	}
	for _, r := range p.stored {
		if r.Topic != "audit" {
			continue
		}
		var a wire.AuditRecord
		if err := json.Unmarshal(r.Value, &a); err != nil {
			panic(err)
		}
		audits = append(audits, a)
	}
	return slices.Clone(p.calls), audits, events
}

// postGeneric sends one signed generic event through a receiver on p and
// returns the status and body of the reply.
func postGeneric(t *testing.T, p *scriptedProducer, dups DuplicateChecker, produceTimeout time.Duration) (int, string) {
	t.Helper()
	const secret = "flight-secret"
	engine := genericEngine(t, secret, Config{
		Producer:       p,
		Duplicates:     dups,
		Topics:         wire.Topics{Events: "events", Audit: "audit"},
		ProduceTimeout: produceTimeout,
	})
	body := []byte(`{"event_id":"evt_f","customer_id":"cus_f","event_type":"t","payload":{}}`)
	w := httptest.NewRecorder()
	engine.ServeHTTP(w, genericRequest(body, genericSignature(secret, body)))
	return w.Code, w.Body.String()
}

// wantAccepted checks one ACCEPTED audit record that points at the event.
func wantAccepted(t *testing.T, audits []wire.AuditRecord) {
	t.Helper()
	if len(audits) != 1 || audits[0].Action != wire.ActionAccepted {
		t.Fatalf("audit records %+v, want one ACCEPTED", audits)
	}
	if a := audits[0]; a.Partition == nil || *a.Partition != 3 || a.Offset == nil || *a.Offset != 0 {
		t.Errorf("ACCEPTED record points at partition %v offset %v, want the event's 3/0", a.Partition, a.Offset)
	}
}

// asyncChecker answers every look-up with status, from a goroutine of its
// own, as PostgresDuplicates' worker does.
type asyncChecker struct{ status Status }

func (c asyncChecker) Lookup(_, _ string, fn func(Status, error)) {
	go fn(c.status, nil)
}

func TestFlightCommonPath(t *testing.T) {
	for _, dups := range []DuplicateChecker{nil, asyncChecker{StatusUnknown}} {
		p := newScriptedProducer(t)
		if code, body := postGeneric(t, p, dups, time.Second); code != http.StatusAccepted {
			t.Fatalf("status %d %s", code, body)
		}
		calls, audits, events := p.snapshot()
		if want := []string{"try events", "try audit"}; !slices.Equal(calls, want) {
			t.Errorf("calls %v, want %v", calls, want)
		}
		if events != 1 {
			t.Errorf("%d events stored", events)
		}
		wantAccepted(t, audits)
	}
}

// A known event leaves the flight for the handler's step-by-step path.
func TestFlightKnownEventToHandler(t *testing.T) {
	p := newScriptedProducer(t)
	if code, body := postGeneric(t, p, asyncChecker{StatusProcessed}, time.Second); code != http.StatusConflict {
		t.Fatalf("status %d %s, want 409", code, body)
	}
	calls, audits, events := p.snapshot()
	if want := []string{"produce audit"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if events != 0 || len(audits) != 1 || audits[0].Action != wire.ActionDuplicate {
		t.Errorf("%d events, audit records %+v; want none and one DUPLICATE", events, audits)
	}
}

// A full buffer, for the event or for its audit record, sends the flight
// back to the handler, which waits for room (Produce) instead of failing
// the request.
func TestFlightFullBufferFallsBackToHandler(t *testing.T) {
	for topic, want := range map[string][]string{
		"events": {"try events", "produce events", "produce audit"},
		"audit":  {"try events", "try audit", "produce audit"},
	} {
		p := newScriptedProducer(t)
		p.full = topic
		if code, body := postGeneric(t, p, nil, time.Second); code != http.StatusAccepted {
			t.Fatalf("full %s: status %d %s", topic, code, body)
		}
		calls, audits, events := p.snapshot()
		if !slices.Equal(calls, want) {
			t.Errorf("full %s: calls %v, want %v", topic, calls, want)
		}
		if events != 1 {
			t.Errorf("full %s: %d events stored", topic, events)
		}
		wantAccepted(t, audits)
	}
}

// An event not acknowledged in time is answered 503; its late
// acknowledgement does not produce an ACCEPTED record for it.
func TestFlightEventTimeout(t *testing.T) {
	p := newScriptedProducer(t)
	p.hold = "events"
	code, body := postGeneric(t, p, nil, 10*time.Millisecond)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", code, body)
	}
	p.release()
	calls, audits, events := p.snapshot()
	if want := []string{"try events", "try audit"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if events != 1 {
		t.Errorf("%d events stored after the late acknowledgement, want 1", events)
	}
	if len(audits) != 1 || audits[0].Action != wire.ActionRejected || audits[0].HTTPStatus != http.StatusServiceUnavailable {
		t.Errorf("audit records %+v, want only the 503's REJECTED", audits)
	}
}

// A stored event whose audit record is not acknowledged in time is still
// answered 202, and the failure is counted.
func TestFlightAuditTimeout(t *testing.T) {
	before := testutil.ToFloat64(auditFailuresTotal)
	p := newScriptedProducer(t)
	p.hold = "audit"
	if code, body := postGeneric(t, p, nil, 10*time.Millisecond); code != http.StatusAccepted {
		t.Fatalf("status %d %s, want 202", code, body)
	}
	if got := testutil.ToFloat64(auditFailuresTotal) - before; got != 1 {
		t.Errorf("audit failures counted %v, want 1", got)
	}
	p.release() // lands late: nothing else happens
	calls, audits, _ := p.snapshot()
	if want := []string{"try events", "try audit"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	wantAccepted(t, audits)
}

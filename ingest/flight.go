package ingest

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// A flight takes a request with a new event through its three waits - the
// duplicate check, the event's acknowledgement, the audit record's
// acknowledgement - as callbacks, so that the handler sleeps once, until
// the end: the checker's worker produces the event as soon as its look-up
// answers, and the event's promise hands the flight to the audit producer
// (auditQueue). Waking the handler between the stages cost each request two
// trips through the scheduler's run queue, which under load was most of its
// latency (a scheduler trace showed about 20 runnable handlers at any time).
//
// Anything off the common path goes back to the handler, which then does it
// step by step as before: a known event (duplicate, in flight, retry), a
// failed check, a producer whose buffer is full.
//
// The handler bounds each produce as receiver.produce does. When a bound
// passes it takes over (state flightAbandoned): before the event is
// acknowledged it answers 503, and the event's late promise produces no
// ACCEPTED record; after, it produces the audit record itself unless the
// audit producer already has, and then it answers 202 and counts the
// record as not acknowledged.
type flight struct {
	r     *Receiver
	event *kgo.Record
	audit *wire.AuditRecord // ACCEPTED; partition and offset set before flightStored

	state atomic.Uint32
	timer *time.Timer // the bound on the produce in progress
	done  chan flightResult

	// Written by each stage before it starts the next.
	checkStart, produceStart, auditStart time.Time
}

const (
	flightChecking  uint32 = iota
	flightProducing        // the event is on its way
	flightStored           // acknowledged; the flight waits for the audit producer
	flightAuditing         // the audit record is on its way
	flightAnswered         // a result is on done
	flightAbandoned        // the handler stopped waiting
)

// flightResult is how a flight ended. Exactly one of these holds:
// checked (the handler decides from status and dupErr), eventErr set (not
// stored), or the event stored (then auditPending or auditErr may be set).
type flightResult struct {
	checked bool
	status  Status
	dupErr  error

	eventErr error

	auditPending bool // the handler must produce the audit record itself
	auditErr     error
}

// promiseGrace is how long past the producer's own delivery timeout a
// request waits for a promise before it stops waiting.
const promiseGrace = 250 * time.Millisecond

func (r *Receiver) startFlight(req *request) *flight {
	f := &flight{
		r:          r,
		event:      r.eventRecord(req, false),
		audit:      r.auditRecord(req, wire.ActionAccepted, "", http.StatusAccepted, nil, -1, -1),
		timer:      time.NewTimer(time.Hour),
		done:       make(chan flightResult, 1),
		checkStart: time.Now(),
	}
	f.timer.Stop()
	if r.cfg.Duplicates == nil {
		f.checked(StatusUnknown, nil)
	} else {
		r.cfg.Duplicates.Lookup(req.src.cfg.Name, req.eventID, f.checked)
	}
	return f
}

// wait returns the flight's result, or what the handler must do when a
// produce outlived its bound.
func (f *flight) wait() flightResult {
	select {
	case res := <-f.done:
		f.timer.Stop()
		return res
	case <-f.timer.C:
	}
	switch {
	case f.state.CompareAndSwap(flightProducing, flightAbandoned):
		return flightResult{eventErr: errProduceTimeout}
	case f.state.CompareAndSwap(flightStored, flightAbandoned):
		return flightResult{auditPending: true}
	case f.state.CompareAndSwap(flightAuditing, flightAbandoned):
		return flightResult{auditErr: errProduceTimeout}
	}
	return <-f.done // answered as the timer fired
}

func (f *flight) answer(res flightResult, from uint32) {
	if f.state.CompareAndSwap(from, flightAnswered) {
		f.done <- res
	}
}

// checked is the duplicate check's callback.
func (f *flight) checked(status Status, err error) {
	if f.r.cfg.Duplicates != nil {
		duplicateCheckSeconds.Observe(time.Since(f.checkStart).Seconds())
	}
	if err != nil || status != StatusUnknown {
		f.answer(flightResult{checked: true, status: status, dupErr: err}, flightChecking)
		return
	}
	if !f.state.CompareAndSwap(flightChecking, flightProducing) {
		return // answered once already
	}
	f.produceStart = time.Now()
	f.timer.Reset(f.r.cfg.ProduceTimeout + promiseGrace)
	// TryProduce: this may be the checker's only worker, which must not
	// wait for room in the producer's buffer.
	f.r.cfg.Producer.TryProduce(context.Background(), f.event, f.stored)
}

// stored is the event's promise; it runs on the producer's promise worker,
// which must not produce (kgo.Client.Produce: a promise that produces can
// end up waiting on itself), so the audit record is left to the audit
// producer.
func (f *flight) stored(rec *kgo.Record, err error) {
	produceSeconds.Observe(time.Since(f.produceStart).Seconds())
	if errors.Is(err, kgo.ErrMaxBuffered) {
		// Never sent: the handler produces it, waiting for room.
		f.answer(flightResult{checked: true, status: StatusUnknown}, flightProducing)
		return
	}
	if err != nil {
		f.answer(flightResult{eventErr: err}, flightProducing)
		return
	}
	p, o := rec.Partition, rec.Offset
	f.audit.Partition, f.audit.Offset = &p, &o
	if !f.state.CompareAndSwap(flightProducing, flightStored) {
		return // answered 503 already; no ACCEPTED record for it
	}
	f.r.audits.push(f)
}

// produceAudit runs on the audit producer.
func (f *flight) produceAudit() {
	kr, err := f.audit.KafkaRecord(f.r.cfg.Topics.Audit)
	if err != nil {
		f.answer(flightResult{auditErr: err}, flightStored)
		return
	}
	f.auditStart = time.Now()
	f.timer.Reset(f.r.cfg.ProduceTimeout + promiseGrace)
	if !f.state.CompareAndSwap(flightStored, flightAuditing) {
		return // the handler took it over
	}
	f.r.cfg.Producer.TryProduce(context.Background(), kr, f.audited)
}

// audited is the audit record's promise.
func (f *flight) audited(_ *kgo.Record, err error) {
	auditSeconds.Observe(time.Since(f.auditStart).Seconds())
	if errors.Is(err, kgo.ErrMaxBuffered) {
		f.answer(flightResult{auditPending: true}, flightAuditing)
		return
	}
	f.answer(flightResult{auditErr: err}, flightAuditing)
}

// auditQueue is the audit producer: flights whose events are stored, and a
// goroutine that produces their audit records while there are any. The
// queue holds at most one entry per request in flight.
type auditQueue struct {
	mu      sync.Mutex
	queue   []*flight
	spare   []*flight
	running bool
}

func (a *auditQueue) push(f *flight) {
	a.mu.Lock()
	a.queue = append(a.queue, f)
	start := !a.running
	a.running = true
	a.mu.Unlock()
	if start {
		go a.run()
	}
}

func (a *auditQueue) run() {
	for {
		a.mu.Lock()
		batch := a.queue
		if len(batch) == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		a.queue, a.spare = a.spare[:0], nil
		a.mu.Unlock()
		for i, f := range batch {
			f.produceAudit()
			batch[i] = nil
		}
		a.mu.Lock()
		a.spare = batch[:0]
		a.mu.Unlock()
	}
}

package ingest

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// A flight takes a request with a new event through its three waits - the
// duplicate check, the event's acknowledgement, the audit record's
// acknowledgement - as callbacks: each stage starts the next from the
// goroutine that finished it (the checker's worker, the producer's promise
// worker), and the handler sleeps once, until the end. Waking the handler
// between the stages cost each request two trips through the scheduler's
// run queue, which under load was most of its latency (a scheduler trace
// showed about 20 runnable handlers waiting at any time).
//
// Anything off the common path goes back to the handler, which then does it
// step by step as before: a known event (duplicate, in flight, retry), a
// failed check, a producer at its buffer limit.
//
// The handler bounds each produce as receiver.produce does. A flight it
// stopped waiting for is abandoned: callbacks that come later do nothing
// more (no audit record for an event answered 503), and it is not reused.
type flight struct {
	r     *Receiver
	req   *request
	event *kgo.Record
	audit *wire.AuditRecord // ACCEPTED; partition and offset set once stored

	state atomic.Uint32
	timer *time.Timer // the bound on the produce in progress
	done  chan flightResult

	// Written by each stage before it starts the next.
	checkStart, produceStart, auditStart time.Time
}

const (
	flightChecking uint32 = iota
	flightProducing
	flightStored   // the event is acknowledged; its audit record is on its way
	flightAnswered // a result is on done
	flightAbandoned
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
		req:        req,
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

// wait returns the flight's result, or what the handler must assume when a
// produce outlived its bound.
func (f *flight) wait() flightResult {
	select {
	case res := <-f.done:
		f.timer.Stop()
		return res
	case <-f.timer.C:
	}
	if f.state.CompareAndSwap(flightProducing, flightAbandoned) {
		return flightResult{eventErr: errProduceTimeout}
	}
	if f.state.CompareAndSwap(flightStored, flightAbandoned) {
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
	f.state.Store(flightProducing)
	f.produceStart = time.Now()
	f.timer.Reset(f.r.cfg.ProduceTimeout + promiseGrace)
	// Not Produce: that blocks while the producer's buffer is full, and
	// this may be the checker's only worker.
	f.r.cfg.Producer.TryProduce(context.Background(), f.event, f.stored)
}

// stored is the event's promise; it runs on the producer's promise worker.
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
	if !f.state.CompareAndSwap(flightProducing, flightStored) {
		return // answered 503 already; no ACCEPTED record for it
	}
	p, o := rec.Partition, rec.Offset
	f.audit.Partition, f.audit.Offset = &p, &o
	// A promise may produce only with TryProduce, and only while the
	// producer is far from its buffer limit: a record refused before it
	// is buffered is delivered by this same worker, which could otherwise
	// end up waiting on itself (kgo.Client.Produce).
	if f.r.buffered() > f.r.maxBuffered/2 {
		f.answer(flightResult{auditPending: true}, flightStored)
		return
	}
	kr, err := f.audit.KafkaRecord(f.r.cfg.Topics.Audit)
	if err != nil {
		f.answer(flightResult{auditErr: err}, flightStored)
		return
	}
	f.auditStart = time.Now()
	f.timer.Reset(f.r.cfg.ProduceTimeout + promiseGrace)
	f.r.cfg.Producer.TryProduce(context.Background(), kr, f.audited)
}

// audited is the audit record's promise.
func (f *flight) audited(_ *kgo.Record, err error) {
	auditSeconds.Observe(time.Since(f.auditStart).Seconds())
	if errors.Is(err, kgo.ErrMaxBuffered) {
		f.answer(flightResult{auditPending: true}, flightStored)
		return
	}
	f.answer(flightResult{auditErr: err}, flightStored)
}

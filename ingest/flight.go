package ingest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// A flight takes a request with a new event through its two waits - the
// duplicate check and the event's acknowledgement - as callbacks, so that
// the handler sleeps once, until the end: the checker's worker produces the
// event as soon as its look-up answers, and the event's promise answers the
// handler. Waking the handler between the stages cost each request a trip
// through the scheduler's run queue per stage, which under load was most of
// its latency: a scheduler trace showed about 16 runnable handlers at any
// time, and running the stages as callbacks took the receiver from 15.3k to
// 18.6k req/s (BENCHMARKS.md, measured when a third stage still produced
// the audit record).
//
// That third stage is gone: the event carries its ACCEPTED audit record in
// the header wire.HeaderAudit (docs/design.md, "The receiver's
// decisions"), so the event's acknowledgement makes the decision durable
// too, and there is no second produce to wait for - nor the goroutine that
// made it (franz-go's promise worker must not produce itself). Not
// measured yet on this machine: one produce per request instead of two
// should cost less, not more.
//
// Anything off the common path goes back to the handler, which then does it
// step by step: a known event (duplicate, in flight, retry), a failed check,
// a producer whose buffer is full.
//
// The handler bounds the produce as receiver.produce does. When the bound
// passes it takes over (state flightAbandoned) and answers 503; an event
// acknowledged after that is in Kafka with its decision, an ambiguous
// outcome the consumer's dedupe absorbs when the provider retries.
type flight struct {
	r     *Receiver
	req   *request // read by the handler only once the flight answered
	event *kgo.Record

	state atomic.Uint32
	timer *time.Timer // the bound on the produce
	done  chan flightResult

	// Written by each stage before it starts the next.
	checkStart, produceStart time.Time

	// trace is nil when tracing is off.
	trace *flightTrace
}

const (
	flightChecking  uint32 = iota
	flightProducing        // the event is on its way
	flightAnswered         // a result is on done
	flightAbandoned        // the handler stopped waiting
)

// flightResult is how a flight ended: checked (the handler decides from
// status and dupErr), eventErr set (not stored), or neither (stored, with
// its decision).
type flightResult struct {
	checked bool
	status  Status
	dupErr  error
	// replayOf: the signed body was accepted before as this other event
	// (replay.go); checked is set too.
	replayOf string
	// limited: a new event over its source's rate limit (admitEvent).
	limited *rejection

	eventErr error
}

// promiseGrace is how long past the producer's own delivery timeout a
// request waits for a promise before it stops waiting.
const promiseGrace = 250 * time.Millisecond

func (r *Receiver) startFlight(req *request) *flight {
	f := &flight{r: r, req: req, timer: time.NewTimer(time.Hour), done: make(chan flightResult, 1), checkStart: time.Now()}
	f.timer.Stop()
	if bf, ok := r.cfg.Duplicates.(BucketFloor); ok {
		req.floor = bf.Floor() // before the look-up is queued: bucket.go
	}
	rec, err := r.decidedEvent(req, wire.ActionAccepted, nil, false)
	if err != nil {
		f.answer(flightResult{eventErr: err}, flightChecking)
		return f
	}
	f.event = rec
	if req.trace != nil {
		f.trace = &flightTrace{ctx: req.trace.ctx}
	}
	rc, signed := r.cfg.Duplicates.(ReplayChecker)
	switch {
	case r.cfg.Duplicates == nil:
		f.checked(StatusUnknown, nil)
	case signed && req.digest != "":
		if f.trace != nil {
			f.trace.lookup = r.startLookup(f.trace.ctx)
		}
		rc.LookupSigned(req.src.cfg.Name, req.eventID, req.digest, f.checkedSigned)
	default:
		if f.trace != nil {
			f.trace.lookup = r.startLookup(f.trace.ctx)
		}
		r.cfg.Duplicates.Lookup(req.src.cfg.Name, req.eventID, f.checked)
	}
	return f
}

// checkedSigned is the callback of a duplicate check that also looked for
// a replay of the signed body under another id.
func (f *flight) checkedSigned(status Status, replayOf string, err error) {
	if replayOf != "" && err == nil {
		duplicateCheckSeconds.Observe(time.Since(f.checkStart).Seconds())
		if f.trace != nil && f.trace.lookup != nil {
			endLookup(f.trace.lookup, status, nil)
		}
		f.answer(flightResult{checked: true, status: status, replayOf: replayOf}, flightChecking)
		return
	}
	f.checked(status, err)
}

// wait returns the flight's result, or 503's when the produce outlived its
// bound.
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
	if f.trace != nil && f.trace.lookup != nil {
		endLookup(f.trace.lookup, status, err)
	}
	if err != nil || status != StatusUnknown {
		f.answer(flightResult{checked: true, status: status, dupErr: err}, flightChecking)
		return
	}
	if rej := f.r.admitEvent(f.req); rej != nil {
		f.answer(flightResult{limited: rej}, flightChecking)
		return
	}
	if !f.state.CompareAndSwap(flightChecking, flightProducing) {
		return // answered once already
	}
	if f.trace != nil {
		f.trace.send = f.r.startSend(f.trace.ctx, f.event.Topic)
	}
	f.produceStart = time.Now()
	f.timer.Reset(f.r.cfg.ProduceTimeout + promiseGrace)
	// TryProduce: this may be the checker's only worker, which must not
	// wait for room in the producer's buffer.
	f.r.cfg.Producer.TryProduce(context.Background(), f.event, f.stored)
}

// stored is the event's promise.
func (f *flight) stored(rec *kgo.Record, err error) {
	produceSeconds.Observe(time.Since(f.produceStart).Seconds())
	if f.trace != nil {
		endSend(f.trace.send, rec, err)
	}
	if errors.Is(err, kgo.ErrMaxBuffered) {
		// Never sent: the handler produces it, waiting for room.
		f.answer(flightResult{checked: true, status: StatusUnknown}, flightProducing)
		return
	}
	f.answer(flightResult{eventErr: err}, flightProducing)
}

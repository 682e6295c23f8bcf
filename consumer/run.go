package consumer

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// verdict is what becomes of one event of a batch.
type verdict int

const (
	processed verdict = iota
	duplicate         // already handled, or already waiting
	failed            // the handler failed: FAILED with a retry, or DEAD
	parked            // its customer is blocked: stored PARKED, in order
	redriven          // a re-drive of a FAILED or DEAD event: queued again
)

type result struct {
	ev      *Event
	verdict verdict
	f       failure // when failed
	// stored says the event has a row (PROCESSING, left by an older
	// version) that its outcome updates, rather than one to insert.
	stored bool
}

// runLane decides the events of l in order and calls the handler for those
// to process. Once one fails (or a re-drive puts the customer in a queue),
// the lane's later events are parked behind it: order holds, and nothing
// waits in memory. It stops before a call when budget says so and returns
// the events it did not reach. tx is the Handler's transaction (nil for a
// Deliverer). A non-nil error means the batch must be abandoned (ctx ended,
// or the transaction broke).
func (c *Consumer) runLane(ctx context.Context, tx pgx.Tx, snap *snapshot, l *lane, budget func() bool) (res []result, rest []*Event, err error) {
	_, blocked := snap.blocked[l.key]
	for i, ev := range l.events {
		kn, exists := snap.events[keyOf(ev)]
		switch {
		case exists && (kn.status == "FAILED" || kn.status == "DEAD") && ev.Redrive:
			res, blocked = append(res, result{ev: ev, verdict: redriven}), true
			continue
		case exists && kn.status != "PROCESSING":
			// PROCESSED (a redelivery, a duplicate produce), PARKED, or
			// FAILED/DEAD and driven by its customer's block.
			res = append(res, result{ev: ev, verdict: duplicate})
			continue
		case blocked:
			res = append(res, result{ev: ev, verdict: parked})
			continue
		}
		if budget != nil && budget() {
			return res, l.events[i:], nil
		}
		ev.Attempt = kn.attempts + 1
		herr, err := c.handle(ctx, tx, ev)
		if err != nil {
			return nil, nil, err
		}
		if herr == nil {
			res = append(res, result{ev: ev, verdict: processed, stored: exists})
			continue
		}
		res, blocked = append(res, result{ev: ev, verdict: failed, f: c.decide(ev, herr, time.Now()), stored: exists}), true
	}
	return res, nil, nil
}

// handle calls the handler for ev: a Handler in a savepoint of tx (taken
// only if it uses the database), so that a failure undoes its writes and
// nothing else; a Deliverer as it is. herr is the handler's error; err
// means the attempt cannot be recorded (ctx ended, the savepoint broke).
func (c *Consumer) handle(ctx context.Context, tx pgx.Tx, ev *Event) (herr, err error) {
	if tx == nil {
		herr = c.call(ctx, nil, ev)
		return herr, ctx.Err()
	}
	sp := &lazySavepoint{ctx: ctx, parent: tx}
	herr = c.call(ctx, sp, ev)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return herr, sp.finish(ctx, herr == nil)
}

// reconcile adjusts a Deliverer's results, decided on a snapshot read
// without locks, to the state found under lock when the outcome is
// recorded: an event someone else recorded meanwhile (a member that lost
// the partition, say) is a duplicate, and a failure of a customer that got
// a block meanwhile (a replay) waits behind that block instead of
// replacing it.
func reconcile(res []result, before, now *snapshot) {
	for i := range res {
		r := &res[i]
		k := keyOf(r.ev)
		if r.verdict == processed || r.verdict == failed {
			if kn, ok := now.events[k]; ok && kn != before.events[k] {
				r.verdict = duplicate
				continue
			}
		}
		ck := customerKey{r.ev.Source, r.ev.CustomerID}
		if _, was := before.blocked[ck]; r.verdict == failed && !was {
			if _, is := now.blocked[ck]; is {
				r.verdict = parked
			}
		}
	}
}

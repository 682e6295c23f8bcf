package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/retention"
)

// A batch is the records of one or more partitions (gather.go). Its
// outcomes and the partitions' next positions commit together (in the
// batch's last transaction), so a crash re-delivers nothing that was
// recorded and skips nothing that was not.
//
// With a Handler, the handlers run inside the transaction that records
// their outcome (their writes happen once): lanes are spread over as many
// group transactions as the handlers' measured time needs (groupsFor), each
// committing at least every CommitInterval of handler time. With a
// Deliverer, the snapshot is read without locks, the calls run outside any
// transaction (lanes side by side, each in order, at most Concurrency at
// once), and one short transaction records every outcome: no connection
// or lock is held for the length of a call.

// batch is the work of one or more partitions, ready to run.
type batch struct {
	parts []part
	lanes []*lane
	dups  []*Event
}

// events are every event of b, its lanes' and its duplicates.
func (b *batch) events() []*Event {
	evs := append([]*Event(nil), b.dups...)
	for _, l := range b.lanes {
		evs = append(evs, l.events...)
	}
	return evs
}

// runBatch drives b to durable outcomes and stores the position. It
// returns errFenced or ctx's error when the batch was abandoned.
func (c *Consumer) runBatch(ctx context.Context, b *batch) error {
	if c.tracer != nil {
		evs := b.events()
		c.startAttempts(evs, time.Now())
		defer abandonAttempts(evs...)
	}
	if c.cfg.Deliverer != nil {
		return c.deliverBatch(ctx, b)
	}
	n := 0
	for _, l := range b.lanes {
		n += len(l.events)
	}
	groups := make([][]*lane, c.groupsFor(n, len(b.lanes)))
	for i, l := range b.lanes {
		groups[i%len(groups)] = append(groups[i%len(groups)], l)
	}
	if len(groups) == 1 {
		return c.runGroup(ctx, b, groups[0], b.dups, true)
	}
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() {
			var dups []*Event
			if i == 0 {
				dups = b.dups
			}
			errs[i] = c.runGroup(ctx, b, g, dups, false)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.retrying(ctx, func() error {
		return pgx.BeginFunc(ctx, c.cfg.Pool, func(tx pgx.Tx) error {
			if err := c.fence(ctx, tx, b.parts); err != nil {
				return err
			}
			return c.storePositions(ctx, tx, b.parts)
		})
	})
}

// runGroup runs lanes in transactions of at most CommitInterval of handler
// time each; the last stores the position when withPosition.
func (c *Consumer) runGroup(ctx context.Context, b *batch, lanes []*lane, dups []*Event, withPosition bool) error {
	for {
		var more []*lane
		err := c.retrying(ctx, func() error {
			var err error
			more, err = c.groupTx(ctx, b, lanes, dups, withPosition)
			return err
		})
		if err != nil || len(more) == 0 {
			return err
		}
		lanes, dups = more, nil
	}
}

// groupTx is one group transaction; it returns the lanes (or their tails)
// left for the next one.
func (c *Consumer) groupTx(ctx context.Context, b *batch, lanes []*lane, dups []*Event, withPosition bool) (more []*lane, err error) {
	start := time.Now()
	tx, err := c.begin(ctx, b.parts)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	snap, err := lookup(ctx, tx, lanes, true)
	if err != nil {
		return nil, err
	}
	times := batchTimes{lookup: start, lookedUp: time.Now()}
	claimSeconds.Observe(times.lookedUp.Sub(start).Seconds())
	calls := 0 // the first call always runs: every transaction makes progress
	budget := func() bool { calls++; return calls > 1 && time.Since(start) > c.cfg.CommitInterval }
	var res []result
	for _, l := range lanes {
		r, rest, err := c.runLane(ctx, tx, snap, l, budget)
		if err != nil {
			return nil, err
		}
		res = append(res, r...)
		if len(rest) > 0 {
			more = append(more, &lane{key: l.key, events: rest})
		}
	}
	times.record = time.Now()
	if err := c.record(ctx, tx, res, dups); err != nil {
		return nil, err
	}
	if withPosition && len(more) == 0 {
		if err := c.storePositions(ctx, tx, b.parts); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	if c.tracer != nil {
		times.recorded = time.Now()
		c.tracedBatch(res, dups, times)
	}
	c.counted(res, dups, time.Since(start))
	batchEvents.Observe(float64(len(res) + len(dups)))
	return more, nil
}

// deliverBatch runs a batch with the Deliverer.
func (c *Consumer) deliverBatch(ctx context.Context, b *batch) error {
	start := time.Now()
	var before *snapshot
	err := c.retrying(ctx, func() (err error) {
		before, err = lookup(ctx, c.cfg.Pool, b.lanes, false)
		return err
	})
	if err != nil {
		return err
	}
	times := batchTimes{lookup: start, lookedUp: time.Now()}
	res, err := c.deliverLanes(ctx, before, b.lanes)
	if err != nil {
		return err
	}
	return c.retrying(ctx, func() error {
		times.record = time.Now()
		tx, err := c.begin(ctx, b.parts)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
		now, err := lookup(ctx, tx, b.lanes, true)
		if err != nil {
			return err
		}
		claimSeconds.Observe(time.Since(times.record).Seconds())
		rs := append([]result(nil), res...)
		reconcile(rs, before, now)
		if err := c.record(ctx, tx, rs, b.dups); err != nil {
			return err
		}
		if err := c.storePositions(ctx, tx, b.parts); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		if c.tracer != nil {
			times.recorded = time.Now()
			c.tracedBatch(rs, b.dups, times)
		}
		c.counted(rs, b.dups, time.Since(start))
		batchEvents.Observe(float64(len(rs) + len(b.dups)))
		return nil
	})
}

// deliverLanes runs the lanes side by side, each in order; the member's
// slots bound the calls in flight.
func (c *Consumer) deliverLanes(ctx context.Context, snap *snapshot, lanes []*lane) ([]result, error) {
	out := make([][]result, len(lanes))
	errs := make([]error, len(lanes))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(len(lanes), c.cfg.Concurrency) {
		wg.Go(func() {
			for i := range next {
				out[i], _, errs[i] = c.runLane(ctx, nil, snap, lanes[i], nil)
			}
		})
	}
	for i := range lanes {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var res []result
	for _, r := range out {
		res = append(res, r...)
	}
	return res, nil
}

// begin starts a transaction for the owner of parts, fenced, that holds
// the bucket lock (retention.HoldBuckets) before it reads any event.
func (c *Consumer) begin(ctx context.Context, parts []part) (pgx.Tx, error) {
	tx, err := c.cfg.Pool.BeginTx(ctx, retention.WriterTx)
	if err != nil {
		return nil, err
	}
	if err := retention.HoldBuckets(ctx, tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	if err := c.fence(ctx, tx, parts); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return tx, nil
}

// retrying runs f until it succeeds, backing off while PostgreSQL or the
// broker fail us. It gives up only when ctx ends or the partition was
// fenced.
func (c *Consumer) retrying(ctx context.Context, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || errors.Is(err, errFenced) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pausesTotal.Inc()
		c.log.Warn("processing paused", "error", err)
		if !backoff.Sleep(ctx, backoff.Delay(attempt, 100*time.Millisecond, 5*time.Second)) {
			return ctx.Err()
		}
	}
}

package consumer

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Batches across partitions. Under live traffic each poll returns a few
// records per partition, and a transaction per partition per poll cost
// PostgreSQL a commit per one or two events (issue 19: 930 commits/s for
// 1,850 events/s). So a partition's worker hands its records to the
// member's batch runners as a job, and a runner gathers the jobs of several
// partitions into one batch: it takes the first job and waits up to
// BatchWait for more, until the batch holds BatchEvents. On a backlog the
// first job is already big and nothing waits; at 1,000 events/s a batch
// gathers about 20 (BatchWait 20ms). One goroutine gathers, so batches do
// not split the arrivals between them, and each batch runs in a goroutine
// of its own: a batch lasts as long as its longest lane (a customer's
// events one after the other), so batches of different partitions must
// overlap. With 2 batches at most in flight a 20 ms destination ran at
// 668 events/s; with 6, 2,847; unbounded, 2,523 (scripts/bench-destination.sh
// 20000 1000 20ms, back to back on a machine busy with other work, so only
// the ratios mean anything; the old design ran 1,070 there). A partition is in at most one batch at a time (its worker waits
// for its job), so each customer stays in order and the batches in flight
// are at most the partitions owned.

// job is one partition's records, decided into lanes, for a batch.
type job struct {
	ctx    context.Context // the worker's: it ends when the partition goes
	part   part
	lanes  []*lane
	dups   []*Event
	events int
	done   chan error // buffered: the worker may have stopped waiting
}

// submit hands j to the runners and waits for its outcome. It waits even
// when the partition is revoked meanwhile: the batch stops at once then
// (runJobs), and the revocation must not return while this member may
// still be calling destinations for the partition, or the next owner's
// deliveries of the same customers would interleave with them.
func (c *Consumer) submit(j *job) error {
	select {
	case c.jobs <- j:
	case <-j.ctx.Done():
		return j.ctx.Err()
	}
	return <-j.done
}

// runBatches gathers batches and runs each in a goroutine until ctx ends,
// then waits for those running.
func (c *Consumer) runBatches(ctx context.Context) {
	var running sync.WaitGroup
	defer running.Wait()
	for {
		jobs := c.gather(ctx)
		if len(jobs) == 0 {
			return
		}
		running.Go(func() { c.runJobs(ctx, jobs) })
	}
}

// gather takes the first job, then more until the batch is big enough or
// BatchWait has passed.
func (c *Consumer) gather(ctx context.Context) []*job {
	var jobs []*job
	select {
	case j := <-c.jobs:
		jobs = append(jobs, j)
	case <-ctx.Done():
		return nil
	}
	n := jobs[0].events
	if n >= c.cfg.BatchEvents {
		return jobs
	}
	t := time.NewTimer(c.cfg.BatchWait)
	defer t.Stop()
	for n < c.cfg.BatchEvents {
		select {
		case j := <-c.jobs:
			jobs, n = append(jobs, j), n+j.events
		case <-t.C:
			return jobs
		case <-ctx.Done():
			return jobs
		}
	}
	return jobs
}

// runJobs runs jobs as one batch and tells each its outcome. The batch
// stops when any of its partitions is revoked (its calls canceled, its
// transactions rolled back) and runs again without that partition; so does
// a partition found fenced. The others' events may then reach their
// destinations again, in order, from this member (at least once).
func (c *Consumer) runJobs(ctx context.Context, jobs []*job) {
	for len(jobs) > 0 {
		jobs = c.dropEnded(jobs)
		if len(jobs) == 0 {
			return
		}
		bctx, cancel := context.WithCancel(ctx)
		stops := make([]func() bool, len(jobs))
		for i, j := range jobs {
			stops[i] = context.AfterFunc(j.ctx, cancel)
		}
		err := c.runBatch(bctx, combine(jobs))
		for _, stop := range stops {
			stop()
		}
		cancel()
		var fenced *fencedError
		switch {
		case errors.As(err, &fenced):
			jobs = c.drop(jobs, fenced.partition, err)
		case err != nil && ctx.Err() == nil:
			continue // a partition was revoked: the others run again
		default:
			for _, j := range jobs {
				j.done <- err
			}
			return
		}
	}
}

// dropEnded tells the jobs of revoked partitions so and returns the others.
func (c *Consumer) dropEnded(jobs []*job) []*job {
	live := jobs[:0]
	for _, j := range jobs {
		if err := j.ctx.Err(); err != nil {
			j.done <- err
		} else {
			live = append(live, j)
		}
	}
	return live
}

// drop tells the job of partition err and returns the others.
func (c *Consumer) drop(jobs []*job, partition int32, err error) []*job {
	live := jobs[:0]
	for _, j := range jobs {
		if j.part.partition == partition {
			j.done <- err
		} else {
			live = append(live, j)
		}
	}
	return live
}

// combine makes one batch of jobs. An event id is unique per job; one that
// also came in another partition (a record produced by hand under another
// key) is a duplicate here: one statement cannot write a row twice.
func combine(jobs []*job) *batch {
	b := &batch{}
	seen := map[eventKey]bool{}
	for _, j := range jobs {
		b.parts = append(b.parts, j.part)
		b.dups = append(b.dups, j.dups...)
		for _, l := range j.lanes {
			kept := &lane{key: l.key}
			for _, ev := range l.events {
				if seen[keyOf(ev)] {
					b.dups = append(b.dups, ev)
					continue
				}
				seen[keyOf(ev)] = true
				kept.events = append(kept.events, ev)
			}
			if len(kept.events) > 0 {
				b.lanes = append(b.lanes, kept)
			}
		}
	}
	return b
}

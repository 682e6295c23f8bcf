package consumer

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/backoff"
)

// worker owns one partition: it processes the partition's records batch by
// batch, each customer in offset order and different customers at once.
// The poll loop adds fetched records to pending without waiting for the
// batch in progress (so one busy partition does not hold up the others);
// the worker takes everything pending as its next batch. Only a partition
// maxPending records behind makes the poll loop wait.
type worker struct {
	c         *Consumer
	partition int32
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	next      int64 // offset the stored position is at; -1 before the first batch
	// ownerEpoch is read once (epoch) and kept: a later take of the
	// partition by this member is a new worker.
	ownerEpoch int64
	epochMu    sync.Mutex
	// blockWake asks runBlocks to look for due customers now.
	blockWake chan struct{}
	// fencedCh carries the block runner's fences to run (retake).
	fencedCh chan int64
	// highWatermark is the partition's end as of the last fetch.
	highWatermark atomic.Int64

	mu      sync.Mutex
	pending []*kgo.Record
	wake    chan struct{} // records were added
	taken   chan struct{} // pending was emptied
}

// maxPending bounds the records waiting for a worker (memory).
const maxPending = 4096

func newWorker(c *Consumer, p int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{c: c, partition: p, ctx: ctx, cancel: cancel, done: make(chan struct{}), next: -1,
		wake: make(chan struct{}, 1), taken: make(chan struct{}, 1), blockWake: make(chan struct{}, 1), fencedCh: make(chan int64, 1)}
}

// enqueue adds fetched records, waiting while maxPending are already
// waiting. It reports false when the worker or ctx stopped first.
func (w *worker) enqueue(ctx context.Context, recs []*kgo.Record) bool {
	for {
		w.mu.Lock()
		if len(w.pending) < maxPending {
			w.pending = append(w.pending, recs...)
			w.mu.Unlock()
			select {
			case w.wake <- struct{}{}:
			default:
			}
			return true
		}
		w.mu.Unlock()
		select {
		case <-w.taken:
		case <-w.ctx.Done():
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (w *worker) run() {
	defer close(w.done)
	blocks := make(chan struct{})
	go func() { defer close(blocks); w.runBlocks() }()
	defer func() {
		w.cancel() // stops the block runner
		<-blocks
	}()
	for {
		var recs []*kgo.Record
		select {
		case <-w.ctx.Done():
			return
		case epoch := <-w.fencedCh:
			if epoch != w.epoch() {
				continue // fenced by this worker's own retake since
			}
			if !w.retake() {
				return
			}
			continue
		case <-w.wake:
			w.mu.Lock()
			recs = w.pending
			w.pending = nil
			w.mu.Unlock()
			select {
			case w.taken <- struct{}{}:
			default:
			}
		}
		if len(recs) == 0 {
			continue
		}
		err := w.process(recs)
		for errors.Is(err, errFenced) && w.retake() {
			err = w.process(recs) // the same records, under the new epoch
		}
		if err != nil {
			return // abandoned: the owner takes over from the stored position
		}
		last := recs[len(recs)-1]
		w.positionStored(last.Offset + 1)
		w.c.cl.MarkCommitRecords(last)
	}
}

// fenced tells the worker that a transaction for its partition under
// epoch found a newer one (the block runner's way; batches return
// errFenced).
func (w *worker) fenced(epoch int64) {
	select {
	case w.fencedCh <- epoch:
	default:
	}
}

// retake answers a fence. Usually this member lost the partition without
// knowing it yet (paused past its session timeout): within RetakeDelay the
// group tells it so, the worker is stopped, and retake reports false. But
// a member paused between its assignment and its take can raise the epoch
// after the partition's next owner did, fencing the owner Kafka knows; if
// the fenced worker stopped, the partition would be processed by no one
// until the next rebalance. So a worker still assigned after RetakeDelay
// takes the partition again (fencing the late taker in turn, which the
// group is about to drop) and goes on from the stored position.
func (w *worker) retake() bool {
	w.c.log.Warn("partition fenced by a newer owner epoch", "partition", w.partition, "retake_after", w.c.cfg.RetakeDelay)
	if !backoff.Sleep(w.ctx, w.c.cfg.RetakeDelay) {
		return false
	}
	var taken map[int32]taking
	err := w.c.retrying(w.ctx, func() (err error) {
		taken, err = w.c.take(w.ctx, []int32{w.partition})
		return err
	})
	if err != nil {
		return false
	}
	t := taken[w.partition]
	w.epochMu.Lock()
	w.ownerEpoch = t.epoch
	w.epochMu.Unlock()
	w.next = max(w.next, t.next)
	w.c.log.Warn("partition taken again", "partition", w.partition, "epoch", t.epoch, "position", w.next)
	return true
}

// process runs one batch of records: decoded and split into lanes here,
// run by the member's batch runners with other partitions' (gather.go).
func (w *worker) process(recs []*kgo.Record) error {
	var evs []*Event
	err := w.c.retrying(w.ctx, func() (err error) {
		evs, err = w.c.decode(w.ctx, recs)
		return err
	})
	if err != nil {
		return err
	}
	j := &job{ctx: w.ctx, part: part{partition: w.partition, epoch: w.epoch(), next: recs[len(recs)-1].Offset + 1}, done: make(chan error, 1)}
	j.lanes, j.dups = lanesOf(evs, w.next)
	j.events = len(evs)
	err = w.c.submit(j)
	if err == nil {
		w.wakeBlocks() // the batch may have blocked or parked customers
	}
	return err
}

// epoch is the owner epoch this worker runs under, taken when the group
// assigned the partition (records arrive only after that).
func (w *worker) epoch() int64 {
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	if w.ownerEpoch == 0 {
		w.ownerEpoch = w.c.epochOf(w.partition)
	}
	return w.ownerEpoch
}

// positionStored notes a stored position.
func (w *worker) positionStored(next int64) {
	w.next = next
	lagRecords.WithLabelValues(w.c.cfg.Topics.Events, strconv.Itoa(int(w.partition))).Set(float64(max(0, w.highWatermark.Load()-next)))
}

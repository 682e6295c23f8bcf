package consumer

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
		wake: make(chan struct{}, 1), taken: make(chan struct{}, 1)}
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
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.wake:
		}
		w.mu.Lock()
		recs := w.pending
		w.pending = nil
		w.mu.Unlock()
		select {
		case w.taken <- struct{}{}:
		default:
		}
		if len(recs) == 0 {
			continue
		}
		ok, stored := w.processBatch(recs)
		if !ok {
			return // abandoned: the next owner takes over from the stored position
		}
		last := recs[len(recs)-1]
		if stored {
			w.positionStored(last.Offset + 1)
		} else {
			w.storePosition(last.Offset + 1)
		}
		w.c.cl.MarkCommitRecords(last)
	}
}

// storePosition records where this partition resumes. It retries until the
// database answers or the partition is revoked: moving on without it would
// only cost a redelivery (deduped), but a position that never moves would
// redeliver more and more.
func (w *worker) storePosition(next int64) {
	for attempt := 0; ; attempt++ {
		_, err := w.c.cfg.Pool.Exec(w.ctx, storePositionSQL, w.c.cfg.Group, w.c.cfg.Topics.Events, w.partition, next)
		if err == nil {
			w.positionStored(next)
			return
		}
		if w.ctx.Err() != nil {
			return
		}
		w.c.log.Warn("store position", "partition", w.partition, "error", err)
		if !backoff.Sleep(w.ctx, backoff.Delay(attempt, 100*time.Millisecond, 5*time.Second)) {
			return
		}
	}
}

// positionStored notes a stored position.
func (w *worker) positionStored(next int64) {
	w.next = next
	lagRecords.WithLabelValues(w.c.cfg.Topics.Events, strconv.Itoa(int(w.partition))).Set(float64(max(0, w.highWatermark.Load()-next)))
}

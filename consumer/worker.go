package consumer

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/backoff"
)

// worker owns one partition: it processes the partition's records batch by
// batch, each customer in offset order and different customers at once.
type worker struct {
	c         *Consumer
	partition int32
	batches   chan []*kgo.Record
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	next      int64 // offset the stored position is at; -1 before the first batch
	// highWatermark is the partition's end as of the last fetch.
	highWatermark atomic.Int64
}

func newWorker(c *Consumer, p int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{c: c, partition: p, batches: make(chan []*kgo.Record, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}), next: -1}
}

func (w *worker) run() {
	defer close(w.done)
	for {
		select {
		case <-w.ctx.Done():
			return
		case recs := <-w.batches:
			if !w.processBatch(recs) {
				return // abandoned: the next owner takes over from the stored position
			}
			last := recs[len(recs)-1]
			w.storePosition(last.Offset + 1)
			w.c.cl.MarkCommitRecords(last)
		}
	}
}

// storePosition records where this partition resumes. It retries until the
// database answers or the partition is revoked: moving on without it would
// only cost a redelivery (deduped), but a position that never moves would
// redeliver more and more.
func (w *worker) storePosition(next int64) {
	for attempt := 0; ; attempt++ {
		_, err := w.c.cfg.Pool.Exec(w.ctx, `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()`,
			w.c.cfg.Group, w.c.cfg.Topics.Events, w.partition, next)
		if err == nil {
			w.next = next
			lagRecords.WithLabelValues(w.c.cfg.Topics.Events, strconv.Itoa(int(w.partition))).Set(float64(max(0, w.highWatermark.Load()-next)))
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

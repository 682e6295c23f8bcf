package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/wire"
)

// Customer blocks (customer_blocks): while a (source, customer) has an
// unfinished older event, its new events are parked behind it, and the
// owner of the customer's partition drives the row: it retries a BLOCKED
// customer's blocker when its backoff is due, and runs a DRAINING
// customer's PARKED events one by one, oldest first. Each step is one
// transaction that reads the row under lock, so any owner continues where
// another stopped: nothing of a retry or a drain lives only in memory.
const (
	stateBlocked  = "BLOCKED"
	stateParked   = "PARKED"
	stateDraining = "DRAINING"
)

func (w *worker) wakeBlocks() {
	select {
	case w.blockWake <- struct{}{}:
	default:
	}
}

// dueLimit bounds the customers one look starts.
const dueLimit = 256

// runBlocks drives the partition's due customers, each in a goroutine of
// its own (the member's slots bound their handler calls), until the worker
// stops.
func (w *worker) runBlocks() {
	var mu sync.Mutex
	running := map[customerKey]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		wait := w.c.cfg.BlockPoll
		if epoch := w.epoch(); epoch != 0 {
			due, soonest, err := w.c.dueBlocks(w.ctx, w.partition)
			if err != nil && w.ctx.Err() == nil {
				w.c.log.Warn("looking for due customers", "partition", w.partition, "error", err)
			}
			for _, k := range due {
				mu.Lock()
				start := !running[k]
				running[k] = true
				mu.Unlock()
				if start {
					wg.Go(func() {
						w.drive(k)
						mu.Lock()
						delete(running, k)
						mu.Unlock()
					})
				}
			}
			if soonest >= 0 && soonest < wait {
				wait = max(soonest, time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			return
		case <-w.blockWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// dueBlocks lists the partition's customers due now, and how long until
// the next one is (-1: none scheduled).
func (c *Consumer) dueBlocks(ctx context.Context, partition int32) (due []customerKey, soonest time.Duration, err error) {
	rows, err := c.cfg.Pool.Query(ctx, `SELECT source, customer_id, extract(epoch FROM next_attempt_at - now())::float8
FROM customer_blocks WHERE kafka_partition = $1 AND next_attempt_at IS NOT NULL
ORDER BY next_attempt_at LIMIT $2`, partition, dueLimit)
	if err != nil {
		return nil, -1, err
	}
	soonest = -1
	var k customerKey
	var in float64
	_, err = pgx.ForEachRow(rows, []any{&k.source, &k.customer, &in}, func() error {
		if in <= 0 {
			due = append(due, k)
		} else if soonest < 0 {
			soonest = time.Duration(in * float64(time.Second))
		}
		return nil
	})
	if len(due) == dueLimit {
		soonest = 0 // more are due: look again at once
	}
	return due, soonest, err
}

// drive runs a customer's steps while they are due.
func (w *worker) drive(k customerKey) {
	for {
		var again bool
		epoch := w.epoch()
		err := w.c.retrying(w.ctx, func() (err error) {
			again, err = w.c.blockStep(w.ctx, w.partition, epoch, k)
			return err
		})
		if errors.Is(err, errFenced) {
			w.fenced(epoch)
			return
		}
		if err != nil || !again {
			return
		}
	}
}

// blockRow is a customer_blocks row, locked.
type blockRow struct {
	key         customerKey
	state       string
	blocker     string
	windowStart time.Time
}

// blockStep runs the customer's next event (its blocker when BLOCKED,
// its oldest PARKED one when DRAINING) and records the outcome. again: the
// customer is due again at once (more to drain).
func (c *Consumer) blockStep(ctx context.Context, partition int32, epoch int64, k customerKey) (again bool, err error) {
	start := time.Now()
	if c.cfg.Deliverer == nil {
		return c.stepTx(ctx, partition, epoch, k, func(tx pgx.Tx, ev *Event) (error, error) {
			c.startStep(ev, start)
			return c.handle(ctx, tx, ev)
		})
	}
	// A Deliverer's call runs between two transactions: the first finds
	// the step (and ends a finished drain), the second records it if the
	// customer's row still points at the same event.
	var target *Event
	again, err = c.stepTx(ctx, partition, epoch, k, func(_ pgx.Tx, ev *Event) (error, error) {
		target = ev
		return nil, errSkipStep
	})
	if !errors.Is(err, errSkipStep) || target == nil {
		return again, err
	}
	c.startStep(target, start)
	herr, err := c.handle(ctx, nil, target)
	if err != nil {
		abandonAttempts(target)
		return false, err
	}
	return c.stepTx(ctx, partition, epoch, k, func(_ pgx.Tx, ev *Event) (error, error) {
		if ev.EventID != target.EventID || ev.Attempt != target.Attempt {
			abandonAttempts(target)
			return nil, errStepMoved
		}
		// The attempt is target's: its span, and its headers, which
		// hold the trace context the attempt may have begun.
		ev.trace, ev.Headers = target.trace, target.Headers
		return herr, nil
	})
}

// startStep starts the span of a step's attempt at ev, with its lookup
// (from start, the step's first transaction, until now).
func (c *Consumer) startStep(ev *Event, start time.Time) {
	if c.tracer == nil {
		return
	}
	c.startAttempt(ev, triggerStep, start)
	c.stepSpan(ev, spanLookup, start, time.Now(), 1)
}

var (
	errSkipStep  = errors.New("consumer: step found, not run")
	errStepMoved = errors.New("consumer: the customer moved on while its event was delivered")
)

// stepTx is one transaction of a step: it finds the customer's next
// event, gets its outcome from run and records it.
func (c *Consumer) stepTx(ctx context.Context, partition int32, epoch int64, k customerKey, run func(pgx.Tx, *Event) (herr, err error)) (again bool, err error) {
	tx, err := c.begin(ctx, []part{{partition: partition, epoch: epoch}})
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	blk, ev, recs, err := c.nextStep(ctx, tx, k)
	if err != nil {
		return false, err
	}
	var f *failure
	var recording time.Time
	if ev != nil {
		herr, err := run(tx, ev)
		// An attempt that is not recorded below runs again: its span ends
		// here as abandoned.
		defer abandonAttempts(ev)
		if errors.Is(err, errStepMoved) {
			return true, nil // look again
		}
		if err != nil {
			return false, err
		}
		recording = time.Now()
		var more []*wire.AuditRecord
		more, f, again, err = c.stepOutcome(ctx, tx, blk, ev, herr)
		if err != nil {
			return false, err
		}
		recs = append(recs, more...)
	}
	if err := c.cfg.Audit.Write(ctx, tx, recs...); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, err
	}
	if ev != nil {
		if ev.trace != nil {
			c.stepSpan(ev, spanRecord, recording, time.Now(), 1)
			c.endAttempt(ev, "processed", f)
		}
		c.stepCounted(ev, f)
	}
	return again, nil
}

// nextStep locks the customer's row and returns its next event (nil when
// it is not due, PARKED, or gone). A DRAINING customer with nothing left
// is unblocked here (its audit record returned).
func (c *Consumer) nextStep(ctx context.Context, tx pgx.Tx, k customerKey) (*blockRow, *Event, []*wire.AuditRecord, error) {
	blk := &blockRow{key: k}
	var blocker *string
	var partition int32
	err := tx.QueryRow(ctx, `SELECT state, blocking_event_id, window_start, kafka_partition FROM customer_blocks
WHERE source = $1 AND customer_id = $2 AND next_attempt_at <= now() FOR UPDATE`, k.source, k.customer).Scan(&blk.state, &blocker, &blk.windowStart, &partition)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	where := `source = $1 AND customer_id = $2 AND status = 'PARKED' ORDER BY kafka_partition, kafka_offset LIMIT 1`
	args := []any{k.source, k.customer}
	if blocker != nil {
		blk.blocker = *blocker
		where, args = `source = $1 AND event_id = $2 AND status IN ('FAILED', 'DEAD')`, []any{k.source, blk.blocker}
	}
	ev, err := loadEvent(ctx, tx, where, args)
	if err != nil || ev != nil {
		return blk, ev, nil, err
	}
	// Nothing left to run: the customer flows again.
	if _, err := tx.Exec(ctx, `DELETE FROM customer_blocks WHERE source = $1 AND customer_id = $2`, k.source, k.customer); err != nil {
		return nil, nil, nil, err
	}
	rec := c.auditRecord(&Event{Source: k.source, CustomerID: k.customer, EventID: blk.blocker, Partition: partition, Headers: map[string]string{}},
		wire.ActionUnparked, "drained", nil)
	return nil, nil, []*wire.AuditRecord{rec}, nil
}

// loadEvent reads (and locks) one stored event with what a run needs.
func loadEvent(ctx context.Context, tx pgx.Tx, where string, args []any) (*Event, error) {
	ev := &Event{}
	var headers []byte
	var received *time.Time
	err := tx.QueryRow(ctx, `SELECT source, event_id, customer_id, event_type, attempts, payload, coalesce(headers, '{}'),
  kafka_partition, kafka_offset, received_at FROM events WHERE `+where+` FOR UPDATE`, args...).Scan(
		&ev.Source, &ev.EventID, &ev.CustomerID, &ev.EventType, &ev.Attempt, &ev.Body, &headers, &ev.Partition, &ev.Offset, &received)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ev.Attempt++
	if received != nil {
		ev.ReceivedAt = *received
	}
	if err := json.Unmarshal(headers, &ev.Headers); err != nil {
		return nil, fmt.Errorf("stored event %s/%s: headers: %w", ev.Source, ev.EventID, err)
	}
	return ev, nil
}

// stepOutcome records a step's outcome in tx.
func (c *Consumer) stepOutcome(ctx context.Context, tx pgx.Tx, blk *blockRow, ev *Event, herr error) (recs []*wire.AuditRecord, f *failure, again bool, err error) {
	recs = []*wire.AuditRecord{c.auditRecord(ev, wire.ActionProcessing, "", nil)}
	if herr != nil {
		windowStart := time.Now()
		if blk.blocker == ev.EventID {
			windowStart = blk.windowStart // the same blocker's retries share one window
		}
		f := c.decide(ev, herr, windowStart)
		frecs, err := c.writeFailure(ctx, tx, ev, f, windowStart)
		return append(recs, frecs...), &f, false, err
	}
	if _, err := tx.Exec(ctx, `UPDATE events SET status = 'PROCESSED', attempts = $3, processed_at = clock_timestamp(), updated_at = now(),
  payload = NULL, headers = NULL, last_error = NULL WHERE source = $1 AND event_id = $2`, ev.Source, ev.EventID, ev.Attempt); err != nil {
		return nil, nil, false, err
	}
	recs = append(recs, c.auditRecord(ev, wire.ActionProcessed, "", nil))
	// Whatever waited behind the event runs next, before anything newer.
	tag, err := tx.Exec(ctx, `UPDATE customer_blocks SET state = 'DRAINING', blocking_event_id = NULL, next_attempt_at = now(), updated_at = now()
WHERE source = $1 AND customer_id = $2
  AND EXISTS (SELECT 1 FROM events WHERE source = $1 AND customer_id = $2 AND status = 'PARKED')`, ev.Source, ev.CustomerID)
	if err != nil {
		return nil, nil, false, err
	}
	if tag.RowsAffected() == 1 {
		return recs, nil, true, nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM customer_blocks WHERE source = $1 AND customer_id = $2`, ev.Source, ev.CustomerID); err != nil {
		return nil, nil, false, err
	}
	return append(recs, c.auditRecord(ev, wire.ActionUnparked, "blocker_processed", nil)), nil, false, nil
}

// stepCounted reports a committed step in the metrics and logs.
func (c *Consumer) stepCounted(ev *Event, f *failure) {
	if f != nil {
		c.logFailure(ev, *f)
		return
	}
	outcomesTotal.WithLabelValues(ev.Source, "processed").Inc()
	if !ev.ReceivedAt.IsZero() {
		endToEndSeconds.WithLabelValues(ev.Source).Observe(time.Since(ev.ReceivedAt).Seconds())
	}
}

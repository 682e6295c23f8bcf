package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/wire"
)

// outcome of one attempt at an event.
type outcome int

const (
	outcomeDone        outcome = iota // PROCESSED, skipped as a duplicate, parked or dead-lettered
	outcomeRetry                      // FAILED: try again after the returned delay
	outcomeDrainParked                // PROCESSED, and it unparked its customer
)

// process drives one record to a durable outcome. It returns false only
// when ctx ended first; the record's last transaction then rolled back and
// the next owner of the partition processes it again.
func (c *Consumer) process(ctx context.Context, r *kgo.Record) bool {
	ev, err := eventOf(r)
	if err != nil {
		c.log.Error("record without hookstream metadata; skipped", "partition", r.Partition, "offset", r.Offset, "error", err)
		return true
	}
	return c.processEvent(ctx, ev)
}

func (c *Consumer) processEvent(ctx context.Context, ev *Event) bool {
	policy := c.cfg.Retry(ev.Source).withDefaults()
	for infra := 0; ; {
		start := time.Now()
		res, delay, err := c.attempt(ctx, ev, policy)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			processingSeconds.WithLabelValues(ev.Source).Observe(time.Since(start).Seconds())
		}
		if err != nil {
			pausesTotal.Inc()
			// PostgreSQL or the broker failed us, not the handler: nothing
			// was recorded; wait and try the same attempt again.
			c.log.Warn("processing paused", "event_id", ev.EventID, "source", ev.Source, "error", err)
			if !backoff.Sleep(ctx, backoff.Delay(infra, 100*time.Millisecond, 5*time.Second)) {
				return false
			}
			infra++
			continue
		}
		infra = 0
		if res == outcomeDrainParked {
			return c.drainParked(ctx, ev.CustomerID)
		}
		if res == outcomeDone {
			return true
		}
		if !backoff.Sleep(ctx, delay) {
			return false
		}
	}
}

// drainParked processes a just-unparked customer's PARKED events in their
// original order. It stops when one of them parks the customer again.
func (c *Consumer) drainParked(ctx context.Context, customer string) bool {
	for {
		ev, err := c.nextParked(ctx, customer)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			c.log.Warn("draining parked events paused", "customer_id", customer, "error", err)
			if !backoff.Sleep(ctx, time.Second) {
				return false
			}
			continue
		}
		if ev == nil {
			return true
		}
		if !c.processEvent(ctx, ev) {
			return false
		}
	}
}

// nextParked is the customer's oldest PARKED event, or nil when none is
// left or the customer is parked again.
func (c *Consumer) nextParked(ctx context.Context, customer string) (*Event, error) {
	var headers []byte
	ev := &Event{CustomerID: customer, fromParked: true}
	err := c.cfg.Pool.QueryRow(ctx, `SELECT e.source, e.event_id, e.event_type, e.payload, coalesce(e.headers, '{}'), e.kafka_partition, e.kafka_offset
FROM events e WHERE e.customer_id = $1 AND e.status = 'PARKED'
  AND NOT EXISTS (SELECT 1 FROM parked_customers p WHERE p.customer_id = $1)
ORDER BY e.kafka_partition, e.kafka_offset LIMIT 1`, customer).Scan(&ev.Source, &ev.EventID, &ev.EventType, &ev.Body, &headers, &ev.Partition, &ev.Offset)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(headers, &ev.Headers); err != nil {
		return nil, fmt.Errorf("parked event %s: headers: %w", ev.EventID, err)
	}
	if t, err := time.Parse(time.RFC3339Nano, ev.Headers[wire.HeaderReceivedAt]); err == nil {
		ev.ReceivedAt = t
	}
	return ev, nil
}

func eventOf(r *kgo.Record) (*Event, error) {
	ev := &Event{Body: r.Value, Partition: r.Partition, Offset: r.Offset, CustomerID: string(r.Key), Headers: make(map[string]string, len(r.Headers))}
	for _, h := range r.Headers {
		ev.Headers[h.Key] = string(h.Value)
	}
	ev.EventID = ev.Headers[wire.HeaderEventID]
	ev.Source = ev.Headers[wire.HeaderSource]
	ev.EventType = ev.Headers[wire.HeaderEventType]
	ev.Redrive = ev.Headers[wire.HeaderRedrive] == "true"
	if t, err := time.Parse(time.RFC3339Nano, ev.Headers[wire.HeaderReceivedAt]); err == nil {
		ev.ReceivedAt = t
	}
	if ev.EventID == "" || ev.Source == "" {
		return nil, errors.New("missing event-id or source header")
	}
	return ev, nil
}

func (c *Consumer) auditRecord(ev *Event, action wire.Action, reason string, detail map[string]any) *wire.AuditRecord {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	p, o := ev.Partition, ev.Offset
	return &wire.AuditRecord{
		SchemaVersion: wire.AuditSchemaVersion, AuditID: id.String(),
		EventID: ev.EventID, Source: ev.Source, CustomerID: ev.CustomerID, EventType: ev.EventType,
		Action: action, Reason: reason, Attempt: ev.Attempt, Partition: &p, Offset: &o,
		Actor: wire.ActorConsumer, Instance: c.cfg.Instance, RequestID: ev.Headers[wire.HeaderRequestID],
		At: time.Now().UTC(), Detail: detail,
	}
}

// claimSQL makes this consumer the event's processor: a new event, or one
// left PROCESSING (by a crashed owner) or FAILED, or a DEAD one the
// receiver re-drove. An event already PROCESSED, PARKED or DEAD is not
// claimed. The row lock it takes makes a concurrent claim wait for this
// transaction and then see the outcome.
const claimSQL = `INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset, received_at)
VALUES ($1, $2, $3, $4, 'PROCESSING', 1, $5, $6, $7)
ON CONFLICT (source, event_id) DO UPDATE
SET status = 'PROCESSING', attempts = events.attempts + 1, kafka_partition = excluded.kafka_partition,
    kafka_offset = excluded.kafka_offset, updated_at = now()
WHERE events.status IN ('PROCESSING', 'FAILED') OR (events.status = 'DEAD' AND $8) OR (events.status = 'PARKED' AND ($8 OR $9))
RETURNING attempts, created_at`

// attempt runs one attempt in one transaction. A non-nil error means the
// transaction did not commit and nothing changed.
func (c *Consumer) attempt(ctx context.Context, ev *Event, policy RetryPolicy) (outcome, time.Duration, error) {
	tx, err := c.cfg.Pool.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit

	var blockerSource, blocker string
	err = tx.QueryRow(ctx, `SELECT source, blocking_event_id FROM parked_customers WHERE customer_id = $1 FOR UPDATE`, ev.CustomerID).Scan(&blockerSource, &blocker)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, err
	}
	isBlocker := err == nil && ev.Redrive && blockerSource == ev.Source && blocker == ev.EventID
	if err == nil && !isBlocker && !ev.fromParked {
		return c.park(ctx, tx, ev)
	}
	var createdAt time.Time
	var receivedAt *time.Time
	if !ev.ReceivedAt.IsZero() {
		receivedAt = &ev.ReceivedAt
	}
	err = tx.QueryRow(ctx, claimSQL, ev.Source, ev.EventID, ev.CustomerID, ev.EventType, ev.Partition, ev.Offset, receivedAt, ev.Redrive, ev.fromParked).Scan(&ev.Attempt, &createdAt)
	if errors.Is(err, pgx.ErrNoRows) {
		// Already PROCESSED (a redelivery or a duplicate produce), or
		// DEAD/PARKED and not re-driven: effectively once.
		if err := c.cfg.Audit.Write(ctx, tx, c.auditRecord(ev, wire.ActionDuplicate, "already_handled", nil)); err != nil {
			return 0, 0, err
		}
		return c.commit(ctx, tx, ev, "duplicate", outcomeDone, 0)
	}
	if err != nil {
		return 0, 0, err
	}
	// The retry window starts at the first claim; a replayed or unparked
	// event gets a new window, from its first attempt here.
	if ev.firstAttempt.IsZero() {
		ev.firstAttempt = createdAt
		if ev.Redrive || ev.fromParked {
			ev.firstAttempt = time.Now()
		}
	}
	// Written with the outcome's records (one statement), stamped now.
	processing := c.auditRecord(ev, wire.ActionProcessing, "", nil)

	// The handler's writes live in a savepoint: on failure they roll back
	// and the failure is recorded in the same transaction.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	herr := c.cfg.Handler.Handle(ctx, sp, ev)
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	if herr == nil {
		if err := sp.Commit(ctx); err != nil {
			return 0, 0, err
		}
		if _, err := tx.Exec(ctx, `UPDATE events SET status = 'PROCESSED', processed_at = clock_timestamp(), updated_at = now(),
payload = NULL, headers = NULL, last_error = NULL WHERE source = $1 AND event_id = $2`, ev.Source, ev.EventID); err != nil {
			return 0, 0, err
		}
		recs := []*wire.AuditRecord{processing, c.auditRecord(ev, wire.ActionProcessed, "", nil)}
		res := outcomeDone
		if isBlocker {
			// The blocker is resolved: the customer is unparked, and its
			// parked events run next, in order, before anything newer.
			if _, err := tx.Exec(ctx, `DELETE FROM parked_customers WHERE customer_id = $1`, ev.CustomerID); err != nil {
				return 0, 0, err
			}
			recs = append(recs, c.auditRecord(ev, wire.ActionUnparked, "blocker_processed", nil))
			res = outcomeDrainParked
		}
		if err := c.cfg.Audit.Write(ctx, tx, recs...); err != nil {
			return 0, 0, err
		}
		return c.commit(ctx, tx, ev, "processed", res, 0)
	}
	if err := sp.Rollback(ctx); err != nil {
		return 0, 0, err
	}
	return c.fail(ctx, tx, ev, policy, herr, processing)
}

// fail records a handler failure and commits: FAILED with a retry
// scheduled, or DEAD with a dead letter and the customer parked.
func (c *Consumer) fail(ctx context.Context, tx pgx.Tx, ev *Event, policy RetryPolicy, herr error, processing *wire.AuditRecord) (outcome, time.Duration, error) {
	f, err := c.recordFailure(ctx, tx, ev, policy, herr, processing)
	if err != nil {
		return 0, 0, err
	}
	if f.dead {
		if _, _, err := c.commit(ctx, tx, ev, "dead", outcomeDone, 0); err != nil {
			return 0, 0, err
		}
		c.logFailure(ev, f)
		return outcomeDone, 0, nil
	}
	if _, _, err := c.commit(ctx, tx, ev, "failed", outcomeRetry, f.delay); err != nil {
		return 0, 0, err
	}
	c.logFailure(ev, f)
	return outcomeRetry, f.delay, nil
}

// failure is what recordFailure decided.
type failure struct {
	dead  bool
	delay time.Duration // before the next attempt, when not dead
	msg   string
}

// recordFailure writes a handler failure into tx without committing it:
// FAILED with a retry scheduled, or, when the error is permanent or the
// attempts or the retry window are spent, DEAD with a dead letter and the
// customer parked.
func (c *Consumer) recordFailure(ctx context.Context, tx pgx.Tx, ev *Event, policy RetryPolicy, herr error, processing *wire.AuditRecord) (failure, error) {
	headers, _ := json.Marshal(ev.Headers)
	msg := herr.Error()
	if len(msg) > 2000 {
		msg = msg[:2000]
	}
	delay := max(backoff.Delay(ev.Attempt-1, policy.InitialBackoff, policy.MaxBackoff), retryAfter(herr))
	outOfTime := policy.MaxElapsed > 0 && time.Since(ev.firstAttempt)+delay > policy.MaxElapsed
	dead := !Retryable(herr) || ev.Attempt >= policy.MaxAttempts || outOfTime
	status := "FAILED"
	if dead {
		status = "DEAD"
	}
	if _, err := tx.Exec(ctx, `UPDATE events SET status = $3, last_error = $4, payload = $5, headers = $6, updated_at = now()
WHERE source = $1 AND event_id = $2`, ev.Source, ev.EventID, status, msg, ev.Body, headers); err != nil {
		return failure{}, err
	}
	failed := c.auditRecord(ev, wire.ActionFailed, "handler_error", map[string]any{"error": msg, "permanent": !Retryable(herr)})
	if !dead {
		retry := c.auditRecord(ev, wire.ActionRetryScheduled, "", map[string]any{"next_attempt": ev.Attempt + 1, "backoff_ms": delay.Milliseconds()})
		if err := c.cfg.Audit.Write(ctx, tx, processing, failed, retry); err != nil {
			return failure{}, err
		}
		return failure{delay: delay, msg: msg}, nil
	}
	reason := "attempts_exhausted"
	switch {
	case !Retryable(herr):
		reason = "permanent_failure"
	case outOfTime && ev.Attempt < policy.MaxAttempts:
		reason = "retry_window_exhausted"
	}
	if _, err := tx.Exec(ctx, `INSERT INTO parked_customers (customer_id, source, blocking_event_id) VALUES ($1, $2, $3)
ON CONFLICT (customer_id) DO NOTHING`, ev.CustomerID, ev.Source, ev.EventID); err != nil {
		return failure{}, err
	}
	err := c.cfg.Audit.Write(ctx, tx, processing, failed,
		c.auditRecord(ev, wire.ActionDeadLettered, reason, map[string]any{"error": msg}),
		c.auditRecord(ev, wire.ActionParked, "blocking_event", map[string]any{"blocking_event_id": ev.EventID}))
	if err != nil {
		return failure{}, err
	}
	// The dead letter is written before the commit: if the commit fails the
	// attempt runs again and the dead-letter topic may hold a second copy,
	// but it never lacks one.
	if err := c.deadLetter(ctx, ev, msg); err != nil {
		return failure{}, err
	}
	return failure{dead: true, msg: msg}, nil
}

// logFailure logs a committed failure.
func (c *Consumer) logFailure(ev *Event, f failure) {
	if f.dead {
		c.log.Error("event dead-lettered; customer parked", "event_id", ev.EventID, "source", ev.Source, "customer_id", ev.CustomerID, "attempts", ev.Attempt, "error", f.msg)
		return
	}
	c.log.Warn("event failed; retry scheduled", "event_id", ev.EventID, "source", ev.Source, "attempt", ev.Attempt, "backoff", f.delay, "error", f.msg)
}

func (c *Consumer) deadLetter(ctx context.Context, ev *Event, msg string) error {
	r := &kgo.Record{Topic: c.cfg.Topics.DLQ, Key: []byte(ev.CustomerID), Value: ev.Body}
	for k, v := range ev.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: "error", Value: []byte(msg)},
		kgo.RecordHeader{Key: "attempts", Value: []byte(strconv.Itoa(ev.Attempt))},
		kgo.RecordHeader{Key: "original-partition", Value: []byte(strconv.Itoa(int(ev.Partition)))},
		kgo.RecordHeader{Key: "original-offset", Value: []byte(strconv.FormatInt(ev.Offset, 10))},
	)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.cl.ProduceSync(pctx, r).FirstErr(); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	return nil
}

// park stores an event of a parked customer, with its payload, to wait for
// the blocker's resolution.
func (c *Consumer) park(ctx context.Context, tx pgx.Tx, ev *Event) (outcome, time.Duration, error) {
	headers, _ := json.Marshal(ev.Headers)
	tag, err := tx.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, event_type, status, kafka_partition, kafka_offset, payload, headers)
VALUES ($1, $2, $3, $4, 'PARKED', $5, $6, $7, $8) ON CONFLICT (source, event_id) DO NOTHING`,
		ev.Source, ev.EventID, ev.CustomerID, ev.EventType, ev.Partition, ev.Offset, ev.Body, headers)
	if err != nil {
		return 0, 0, err
	}
	action, reason, outcome := wire.ActionParked, "customer_parked", "parked"
	if tag.RowsAffected() == 0 {
		action, reason, outcome = wire.ActionDuplicate, "already_handled", "duplicate"
	}
	if err := c.cfg.Audit.Write(ctx, tx, c.auditRecord(ev, action, reason, nil)); err != nil {
		return 0, 0, err
	}
	return c.commit(ctx, tx, ev, outcome, outcomeDone, 0)
}

// commit commits tx and, once it is durable, counts the outcome.
func (c *Consumer) commit(ctx context.Context, tx pgx.Tx, ev *Event, name string, res outcome, delay time.Duration) (outcome, time.Duration, error) {
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, err
	}
	outcomesTotal.WithLabelValues(ev.Source, name).Inc()
	if name == "processed" && !ev.ReceivedAt.IsZero() {
		endToEndSeconds.WithLabelValues(ev.Source).Observe(time.Since(ev.ReceivedAt).Seconds())
	}
	return res, delay, nil
}

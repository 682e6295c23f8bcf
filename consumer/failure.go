package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/internal/wire"
)

// failure is what a handler error means for its event: a retry after
// delay, or DEAD (with the reason).
type failure struct {
	err    error
	msg    string
	dead   bool
	reason string        // why DEAD
	delay  time.Duration // before the next attempt, when not dead
}

// decide applies the source's retry policy to a failed attempt. The retry
// window (MaxElapsed) runs from windowStart: the blocker's first failure,
// or its replay.
func (c *Consumer) decide(ev *Event, herr error, windowStart time.Time) failure {
	policy := c.cfg.Retry(ev.Source).withDefaults()
	// The message is stored (last_error), audited, put on the dead letter
	// and logged: a URL in it (a destination's, with its credentials) is
	// redacted here, for every Handler and Deliverer.
	msg := redact.Text(herr.Error())
	if len(msg) > 2000 {
		msg = msg[:2000]
	}
	f := failure{err: herr, msg: msg}
	f.delay = max(backoff.Delay(ev.Attempt-1, policy.InitialBackoff, policy.MaxBackoff), retryAfter(herr))
	outOfTime := policy.MaxElapsed > 0 && time.Since(windowStart)+f.delay > policy.MaxElapsed
	switch {
	case !Retryable(herr):
		f.dead, f.reason = true, "permanent_failure"
	case ev.Attempt >= policy.MaxAttempts:
		f.dead, f.reason = true, "attempts_exhausted"
	case outOfTime:
		f.dead, f.reason = true, "retry_window_exhausted"
	}
	return f
}

// failedEventSQL records a failed attempt: the event's row updated where
// it is (a retry of a blocker, or a row an older version left PROCESSING),
// or inserted into the current bucket (retention) on a first failure.
const failedEventSQL = `WITH updated AS (
  UPDATE events SET status = $5, attempts = $6, last_error = $10, payload = $11, headers = $12, updated_at = now()
  WHERE source = $1 AND event_id = $2
  RETURNING 1)
INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset,
  received_at, last_error, payload, headers, bucket)
SELECT $1, $2, $3::text, $4::text, $5, $6, $7::int, $8::bigint, $9::timestamptz, $10, $11, $12, (SELECT bucket FROM event_clock)
WHERE NOT EXISTS (SELECT 1 FROM updated)
ON CONFLICT (source, event_id, bucket) DO UPDATE
SET status = excluded.status, attempts = excluded.attempts, last_error = excluded.last_error,
    payload = excluded.payload, headers = excluded.headers, updated_at = now()`

// blockSQL makes the event its customer's blocker: BLOCKED until its retry
// is due, or PARKED when it is DEAD.
const blockSQL = `INSERT INTO customer_blocks AS b (source, customer_id, state, blocking_event_id, kafka_partition, next_attempt_at, window_start)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (source, customer_id) DO UPDATE
SET state = excluded.state, blocking_event_id = excluded.blocking_event_id, next_attempt_at = excluded.next_attempt_at,
    window_start = excluded.window_start, updated_at = now()`

// writeFailure records a failed attempt in tx and returns its audit
// records: the event FAILED and its customer BLOCKED until the retry, or
// the event DEAD (with a dead letter) and its customer PARKED. The dead
// letter is written before the commit: if the commit fails the attempt
// runs again and the dead-letter topic may hold a second copy, but it
// never lacks one.
func (c *Consumer) writeFailure(ctx context.Context, tx pgx.Tx, ev *Event, f failure, windowStart time.Time) ([]*wire.AuditRecord, error) {
	headers, err := json.Marshal(ev.Headers)
	if err != nil {
		return nil, err
	}
	status, state, next := "FAILED", stateBlocked, new(time.Now().Add(f.delay))
	if f.dead {
		status, state, next = "DEAD", stateParked, nil
	}
	if _, err := tx.Exec(ctx, failedEventSQL, ev.Source, ev.EventID, ev.CustomerID, ev.EventType, status, ev.Attempt,
		ev.Partition, ev.Offset, nullTime(ev.ReceivedAt), f.msg, ev.Body, headers); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, blockSQL, ev.Source, ev.CustomerID, state, ev.EventID, ev.Partition, next, windowStart); err != nil {
		return nil, err
	}
	failed := c.auditRecord(ev, wire.ActionFailed, "handler_error", map[string]any{"error": f.msg, "permanent": !Retryable(f.err)})
	if !f.dead {
		return []*wire.AuditRecord{failed, c.auditRecord(ev, wire.ActionRetryScheduled, "",
			map[string]any{"next_attempt": ev.Attempt + 1, "backoff_ms": f.delay.Milliseconds()})}, nil
	}
	if err := c.deadLetter(ctx, ev, f.msg); err != nil {
		return nil, err
	}
	return []*wire.AuditRecord{failed,
		c.auditRecord(ev, wire.ActionDeadLettered, f.reason, map[string]any{"error": f.msg}),
		c.auditRecord(ev, wire.ActionParked, "blocking_event", map[string]any{"blocking_event_id": ev.EventID}),
	}, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// logFailure logs a committed failure.
func (c *Consumer) logFailure(ev *Event, f failure) {
	log := c.logFor(ev)
	if f.dead {
		outcomesTotal.WithLabelValues(ev.Source, "dead").Inc()
		log.Error("event dead-lettered; customer parked", "event_id", ev.EventID, "source", ev.Source, "customer_id", ev.CustomerID, "attempts", ev.Attempt, "error", f.msg)
		return
	}
	outcomesTotal.WithLabelValues(ev.Source, "failed").Inc()
	log.Warn("event failed; retry scheduled", "event_id", ev.EventID, "source", ev.Source, "attempt", ev.Attempt, "backoff", f.delay, "error", f.msg)
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

package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/internal/retention"
	"github.com/hookstream/hookstream/internal/wire"
)

// ErrNotReplayable: the event is unknown, or not FAILED or DEAD.
var ErrNotReplayable = errors.New("consumer: event is not FAILED or DEAD")

// ErrNotParked: the customer is not parked (or not blocked, for Unpark
// without skipping).
var ErrNotParked = errors.New("consumer: customer is not parked")

// ErrAmbiguous: the customer is blocked in several sources; name one.
var ErrAmbiguous = errors.New("consumer: customer is blocked in several sources")

// ErrBlockerChanged: the customer is blocked by another event than the
// one the caller expected (UnparkOptions.ExpectBlocker), or by none.
var ErrBlockerChanged = errors.New("consumer: the customer's blocking event changed")

// UnparkOptions say what Unpark does.
type UnparkOptions struct {
	// Source is the customer's source; "" when it is blocked in one
	// source only.
	Source string
	// SkipBlocker leaves the blocking event DEAD and drains the waiting
	// events now; the customer must be PARKED. Default: replay the
	// blocking event.
	SkipBlocker bool
	// Reason is recorded in the audit record.
	Reason string
	// ExpectBlocker makes Unpark check, under the customer's lock, that
	// the blocking event is Blocker ("": none, the customer is
	// draining), and fail with ErrBlockerChanged otherwise: an operator
	// who was shown the event to skip never skips another.
	ExpectBlocker bool
	Blocker       string
}

// ReplayConfig says where Replay finds events.
type ReplayConfig struct {
	Pool     *pgxpool.Pool
	Audit    AuditWriter
	Actor    wire.Actor // default admin
	Instance string
}

func (cfg ReplayConfig) withDefaults() ReplayConfig {
	if cfg.Actor == "" {
		cfg.Actor = wire.ActorAdmin
	}
	return cfg
}

// requeued is what requeue did.
type requeued struct {
	customer, eventType, status string // status before
	attempts                    int
	partition                   int32
	offset                      int64
	retryNow                    bool // it is its customer's blocker, due now
	// traceparent and tracestate are the event's trace context, as stored
	// with it ("" when it has none).
	traceparent, tracestate string
}

// requeue puts a FAILED or DEAD event back in its customer's line, in tx:
// the blocker of its customer runs again now (a new retry window); any
// other event is PARKED, to run in offset order when its customer drains,
// and a customer without a block gets one, DRAINING and due now. A
// replay and a provider's re-send of the event both come here, so neither
// is ever dropped. Locks are taken block first, then event, as everywhere.
// With selectedAt, an event updated since then (not as it was selected)
// is ErrNotReplayable too.
func requeue(ctx context.Context, tx pgx.Tx, source, eventID string, selectedAt *time.Time) (*requeued, error) {
	rq := &requeued{}
	err := tx.QueryRow(ctx, `SELECT customer_id FROM events WHERE source = $1 AND event_id = $2`, source, eventID).Scan(&rq.customer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s/%s not found", ErrNotReplayable, source, eventID)
	}
	if err != nil {
		return nil, err
	}
	var blocker *string
	err = tx.QueryRow(ctx, `SELECT blocking_event_id FROM customer_blocks WHERE source = $1 AND customer_id = $2 FOR UPDATE`, source, rq.customer).Scan(&blocker)
	blocked := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	var updatedAt time.Time
	err = tx.QueryRow(ctx, `SELECT event_type, status, attempts, kafka_partition, kafka_offset,
  coalesce(headers->>'traceparent', ''), coalesce(headers->>'tracestate', ''), updated_at FROM events
WHERE source = $1 AND event_id = $2 FOR UPDATE`, source, eventID).Scan(&rq.eventType, &rq.status, &rq.attempts, &rq.partition, &rq.offset,
		&rq.traceparent, &rq.tracestate, &updatedAt)
	if err != nil {
		return nil, err
	}
	if rq.status != "FAILED" && rq.status != "DEAD" {
		return nil, fmt.Errorf("%w: %s/%s is %s", ErrNotReplayable, source, eventID, rq.status)
	}
	if selectedAt != nil && !updatedAt.Equal(*selectedAt) {
		return nil, fmt.Errorf("%w: %s/%s changed since it was selected (now %s, updated %s)", ErrNotReplayable, source, eventID,
			rq.status, updatedAt.UTC().Format(time.RFC3339Nano))
	}
	rq.retryNow = blocker != nil && *blocker == eventID
	switch {
	case rq.retryNow:
		_, err = tx.Exec(ctx, `UPDATE customer_blocks SET state = 'BLOCKED', next_attempt_at = now(), window_start = now(), updated_at = now()
WHERE source = $1 AND customer_id = $2`, source, rq.customer)
	case !blocked:
		_, err = tx.Exec(ctx, `INSERT INTO customer_blocks (source, customer_id, state, kafka_partition, next_attempt_at)
VALUES ($1, $2, 'DRAINING', $3, now())`, source, rq.customer, rq.partition)
	}
	if err != nil {
		return nil, err
	}
	status := "PARKED"
	if rq.retryNow {
		status = "FAILED"
	}
	_, err = tx.Exec(ctx, `UPDATE events SET status = $3, updated_at = now() WHERE source = $1 AND event_id = $2`, source, eventID, status)
	return rq, err
}

// redrive is the consumer's side of a provider re-sending a FAILED or DEAD
// event (the receiver produced it again, marked redrive): the event is
// requeued, and the returned record says how.
func (c *Consumer) redrive(ctx context.Context, tx pgx.Tx, ev *Event) (*wire.AuditRecord, error) {
	rq, err := requeue(ctx, tx, ev.Source, ev.EventID, nil)
	if errors.Is(err, ErrNotReplayable) {
		return c.auditRecord(ev, wire.ActionDuplicate, "already_handled", nil), nil
	}
	if err != nil {
		return nil, err
	}
	linkRedrive(ev, rq)
	ev.Attempt = rq.attempts
	if rq.retryNow {
		return c.auditRecord(ev, wire.ActionRetryScheduled, "redrive", map[string]any{"next_attempt": rq.attempts + 1, "backoff_ms": 0}), nil
	}
	return c.auditRecord(ev, wire.ActionParked, "redrive_queued", map[string]any{"previous_status": rq.status}), nil
}

// Replay re-drives a FAILED or DEAD event (requeue), audited REPLAYED in
// the same transaction. The owner of the event's partition runs it.
func Replay(ctx context.Context, cfg ReplayConfig, source, eventID, reason string) error {
	return replay(ctx, cfg, source, eventID, reason, nil)
}

// ReplaySelected is Replay of an event selected as it was at updatedAt
// (a bulk replay's selection): an event updated since, even if FAILED or
// DEAD again (another operator replayed it, the consumer retried it), is
// ErrNotReplayable, so that it is not re-driven in a state nobody chose
// to replay, nor twice for one decision.
func ReplaySelected(ctx context.Context, cfg ReplayConfig, source, eventID, reason string, updatedAt time.Time) error {
	return replay(ctx, cfg, source, eventID, reason, &updatedAt)
}

func replay(ctx context.Context, cfg ReplayConfig, source, eventID, reason string, selectedAt *time.Time) error {
	cfg = cfg.withDefaults()
	return pgx.BeginTxFunc(ctx, cfg.Pool, retention.WriterTx, func(tx pgx.Tx) error {
		if err := retention.HoldBuckets(ctx, tx); err != nil {
			return err
		}
		rq, err := requeue(ctx, tx, source, eventID, selectedAt)
		if err != nil {
			return err
		}
		return cfg.Audit.Write(ctx, tx, adminRecord(cfg, &wire.AuditRecord{EventID: eventID, Source: source, CustomerID: rq.customer,
			EventType: rq.eventType, Action: wire.ActionReplayed, Reason: reason, Attempt: rq.attempts,
			Partition: &rq.partition, Offset: &rq.offset, Detail: map[string]any{"previous_status": rq.status}}))
	})
}

// adminRecord completes an audit record written by an operator's action.
func adminRecord(cfg ReplayConfig, r *wire.AuditRecord) *wire.AuditRecord {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	r.SchemaVersion, r.AuditID, r.Actor, r.Instance, r.At = wire.AuditSchemaVersion, id.String(), cfg.Actor, cfg.Instance, time.Now().UTC()
	return r
}

// Blocked is a customer with unfinished older events.
type Blocked struct {
	CustomerID string `json:"customer_id"`
	Source     string `json:"source"`
	// State is BLOCKED (its blocker is in backoff), PARKED (its blocker is
	// DEAD: an operator decides) or DRAINING (its waiting events run now).
	State string `json:"state"`
	// BlockingEventID is empty while DRAINING.
	BlockingEventID string     `json:"blocking_event_id,omitempty"`
	NextAttemptAt   *time.Time `json:"next_attempt_at,omitempty"`
	Since           time.Time  `json:"since"`
	Waiting         int        `json:"waiting"` // PARKED events behind the blocker
}

// BlockedCustomers lists blocked customers, oldest first; state "" for
// every state.
func BlockedCustomers(ctx context.Context, pool *pgxpool.Pool, state string) ([]Blocked, error) {
	rows, err := pool.Query(ctx, `SELECT b.customer_id, b.source, b.state, coalesce(b.blocking_event_id, ''), b.next_attempt_at, b.since,
  (SELECT count(*) FROM events e WHERE e.source = b.source AND e.customer_id = b.customer_id AND e.status = 'PARKED')
FROM customer_blocks b WHERE $1 = '' OR b.state = $1 ORDER BY b.since, b.customer_id, b.source`, state)
	if err != nil {
		return nil, err
	}
	out := []Blocked{}
	var b Blocked
	_, err = pgx.ForEachRow(rows, []any{&b.CustomerID, &b.Source, &b.State, &b.BlockingEventID, &b.NextAttemptAt, &b.Since, &b.Waiting}, func() error {
		out = append(out, b)
		return nil
	})
	return out, err
}

// Unpark resolves a blocked customer (UnparkOptions). By default it
// replays the blocking event; when that succeeds the parked events run in
// their original order. With SkipBlocker, the customer must be PARKED:
// its blocker stays DEAD and the waiting events drain now. Each is one
// transaction over the customer's locked row, so a repeated or
// concurrent call cannot skip a second event, and the expected blocker
// is checked under that lock.
func Unpark(ctx context.Context, cfg ReplayConfig, customer string, opt UnparkOptions) error {
	cfg = cfg.withDefaults()
	reason := opt.Reason
	return pgx.BeginTxFunc(ctx, cfg.Pool, retention.WriterTx, func(tx pgx.Tx) error {
		if err := retention.HoldBuckets(ctx, tx); err != nil {
			return err
		}
		src, state, blocker, err := lockBlock(ctx, tx, opt.Source, customer)
		if err != nil {
			return err
		}
		if opt.ExpectBlocker && blocker != opt.Blocker {
			return fmt.Errorf("%w: %s is now blocked by %s, not %s", ErrBlockerChanged, customer, quoteOrNone(blocker), quoteOrNone(opt.Blocker))
		}
		if !opt.SkipBlocker {
			if blocker == "" {
				return fmt.Errorf("%w: %s is %s", ErrNotParked, customer, state)
			}
			rq, err := requeue(ctx, tx, src, blocker, nil)
			if err != nil {
				return err
			}
			return cfg.Audit.Write(ctx, tx, adminRecord(cfg, &wire.AuditRecord{EventID: blocker, Source: src, CustomerID: customer,
				EventType: rq.eventType, Action: wire.ActionReplayed, Reason: reason, Attempt: rq.attempts,
				Partition: &rq.partition, Offset: &rq.offset, Detail: map[string]any{"previous_status": rq.status, "unpark": true}}))
		}
		if state != stateParked {
			return fmt.Errorf("%w: %s is %s, not PARKED behind a dead event", ErrNotParked, customer, state)
		}
		if _, err := tx.Exec(ctx, `UPDATE customer_blocks SET state = 'DRAINING', blocking_event_id = NULL, next_attempt_at = now(), updated_at = now()
WHERE source = $1 AND customer_id = $2`, src, customer); err != nil {
			return err
		}
		return cfg.Audit.Write(ctx, tx, adminRecord(cfg, &wire.AuditRecord{EventID: blocker, Source: src, CustomerID: customer,
			Action: wire.ActionUnparked, Reason: "blocker_skipped", Detail: map[string]any{"note": reason}}))
	})
}

func quoteOrNone(id string) string {
	if id == "" {
		return "no event (it is draining)"
	}
	return `"` + id + `"`
}

// lockBlock locks the customer's row (of source, or of its only source).
func lockBlock(ctx context.Context, tx pgx.Tx, source, customer string) (src, state, blocker string, err error) {
	rows, err := tx.Query(ctx, `SELECT source, state, coalesce(blocking_event_id, '') FROM customer_blocks
WHERE customer_id = $1 AND ($2 = '' OR source = $2) ORDER BY source FOR UPDATE`, customer, source)
	if err != nil {
		return "", "", "", err
	}
	n := 0
	_, err = pgx.ForEachRow(rows, []any{&src, &state, &blocker}, func() error { n++; return nil })
	switch {
	case err != nil:
		return "", "", "", err
	case n == 0:
		return "", "", "", fmt.Errorf("%w: %s", ErrNotParked, customer)
	case n > 1:
		return "", "", "", fmt.Errorf("%w: %s (give its source)", ErrAmbiguous, customer)
	}
	return src, state, blocker, nil
}

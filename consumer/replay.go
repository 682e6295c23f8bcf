package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// ErrNotReplayable: the event is unknown, or not FAILED or DEAD (or the
// PARKED event that now blocks its customer).
var ErrNotReplayable = errors.New("consumer: event is not FAILED or DEAD")

// ErrNotParked: the customer is not parked.
var ErrNotParked = errors.New("consumer: customer is not parked")

// ReplayProducer is the part of *kgo.Client Replay needs.
type ReplayProducer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// ReplayConfig says where Replay finds events and puts them back.
type ReplayConfig struct {
	Pool     *pgxpool.Pool
	Producer ReplayProducer
	Audit    AuditWriter
	Topics   wire.Topics
	Actor    wire.Actor // default admin
	Instance string
}

func (cfg ReplayConfig) withDefaults() ReplayConfig {
	cfg.Topics = cfg.Topics.WithDefaults()
	if cfg.Actor == "" {
		cfg.Actor = wire.ActorAdmin
	}
	return cfg
}

// Replay re-drives a FAILED or DEAD event: its stored body and metadata go
// back to the events topic marked redrive, and the consumer processes it
// again. When it is the event that parked its customer, its success
// unparks the customer and the parked events follow in order. The replay
// is audited (REPLAYED) in the same transaction that checks the state.
func Replay(ctx context.Context, cfg ReplayConfig, source, eventID, reason string) error {
	cfg = cfg.withDefaults()
	tx, err := cfg.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	var customer, eventType, status string
	var body, headers []byte
	var attempts int
	err = tx.QueryRow(ctx, `SELECT customer_id, event_type, status, attempts, payload, coalesce(headers, '{}') FROM events
WHERE source = $1 AND event_id = $2 FOR UPDATE`, source, eventID).Scan(&customer, &eventType, &status, &attempts, &body, &headers)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s/%s not found", ErrNotReplayable, source, eventID)
	}
	if err != nil {
		return err
	}
	if status == "PARKED" {
		// Only the event an unpark made the blocker may be replayed while
		// parked: the consumer then drains the rest behind it.
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM parked_customers WHERE customer_id = $1 AND source = $2 AND blocking_event_id = $3`, customer, source, eventID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: %s/%s is PARKED behind another event", ErrNotReplayable, source, eventID)
		}
	} else if status != "FAILED" && status != "DEAD" {
		return fmt.Errorf("%w: %s/%s is %s", ErrNotReplayable, source, eventID, status)
	}
	var h map[string]string
	if err := json.Unmarshal(headers, &h); err != nil {
		return fmt.Errorf("consumer: replay %s/%s: headers: %w", source, eventID, err)
	}
	h[wire.HeaderRedrive] = "true"
	rec := &kgo.Record{Topic: cfg.Topics.Events, Key: []byte(customer), Value: body}
	for k, v := range h {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	a := &wire.AuditRecord{SchemaVersion: wire.AuditSchemaVersion, AuditID: id.String(), EventID: eventID, Source: source,
		CustomerID: customer, EventType: eventType, Action: wire.ActionReplayed, Reason: reason, Attempt: attempts,
		Actor: cfg.Actor, Instance: cfg.Instance, At: time.Now().UTC(), Detail: map[string]any{"previous_status": status}}
	if err := cfg.Audit.Write(ctx, tx, a); err != nil {
		return err
	}
	// Produce before committing the audit row: a replay that was not
	// produced is never recorded as done. A crash in between leaves a
	// produced replay without its REPLAYED row; the consumer's rows record
	// its processing all the same.
	if err := cfg.Producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("consumer: replay %s/%s: %w", source, eventID, err)
	}
	return tx.Commit(ctx)
}

// Parked is a parked customer.
type Parked struct {
	CustomerID      string    `json:"customer_id"`
	Source          string    `json:"source"`
	BlockingEventID string    `json:"blocking_event_id"`
	Since           time.Time `json:"since"`
	Waiting         int       `json:"waiting"` // PARKED events behind the blocker
}

// ParkedCustomers lists the parked customers, oldest first.
func ParkedCustomers(ctx context.Context, pool *pgxpool.Pool) ([]Parked, error) {
	rows, err := pool.Query(ctx, `SELECT p.customer_id, p.source, p.blocking_event_id, p.since,
  (SELECT count(*) FROM events e WHERE e.customer_id = p.customer_id AND e.status = 'PARKED')
FROM parked_customers p ORDER BY p.since, p.customer_id`)
	if err != nil {
		return nil, err
	}
	out := []Parked{}
	var p Parked
	_, err = pgx.ForEachRow(rows, []any{&p.CustomerID, &p.Source, &p.BlockingEventID, &p.Since, &p.Waiting}, func() error {
		out = append(out, p)
		return nil
	})
	return out, err
}

// Unpark resolves a parked customer. By default it replays the blocking
// event; when it succeeds the customer is unparked and its parked events
// run in their original order. With skipBlocker the blocker stays DEAD and
// the oldest parked event becomes the one replayed, so the others still
// follow it in order (and events arriving meanwhile wait behind them).
func Unpark(ctx context.Context, cfg ReplayConfig, customer string, skipBlocker bool, reason string) error {
	cfg = cfg.withDefaults()
	var source, blocker string
	err := cfg.Pool.QueryRow(ctx, `SELECT source, blocking_event_id FROM parked_customers WHERE customer_id = $1`, customer).Scan(&source, &blocker)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNotParked, customer)
	}
	if err != nil {
		return err
	}
	if !skipBlocker {
		return Replay(ctx, cfg, source, blocker, reason)
	}
	tx, err := cfg.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	var nextSource, next string
	err = tx.QueryRow(ctx, `SELECT source, event_id FROM events WHERE customer_id = $1 AND status = 'PARKED'
ORDER BY kafka_partition, kafka_offset LIMIT 1`, customer).Scan(&nextSource, &next)
	noneWaiting := errors.Is(err, pgx.ErrNoRows)
	if err != nil && !noneWaiting {
		return err
	}
	if noneWaiting {
		_, err = tx.Exec(ctx, `DELETE FROM parked_customers WHERE customer_id = $1`, customer)
	} else {
		_, err = tx.Exec(ctx, `UPDATE parked_customers SET source = $2, blocking_event_id = $3 WHERE customer_id = $1`, customer, nextSource, next)
	}
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if err := cfg.Audit.Write(ctx, tx, &wire.AuditRecord{SchemaVersion: wire.AuditSchemaVersion, AuditID: id.String(),
		EventID: blocker, Source: source, CustomerID: customer, Action: wire.ActionUnparked, Reason: "blocker_skipped",
		Actor: cfg.Actor, Instance: cfg.Instance, At: time.Now().UTC(), Detail: map[string]any{"note": reason}}); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if noneWaiting {
		return nil
	}
	return Replay(ctx, cfg, nextSource, next, reason)
}

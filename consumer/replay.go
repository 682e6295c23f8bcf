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

// ErrNotReplayable: the event is unknown, or not FAILED or DEAD.
var ErrNotReplayable = errors.New("consumer: event is not FAILED or DEAD")

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

// Replay re-drives a FAILED or DEAD event: its stored body and metadata go
// back to the events topic marked redrive, and the consumer processes it
// again. When it is the event that parked its customer, its success
// unparks the customer and the parked events follow in order. The replay
// is audited (REPLAYED) in the same transaction that checks the state.
func Replay(ctx context.Context, cfg ReplayConfig, source, eventID, reason string) error {
	cfg.Topics = cfg.Topics.WithDefaults()
	if cfg.Actor == "" {
		cfg.Actor = wire.ActorAdmin
	}
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
	if status != "FAILED" && status != "DEAD" {
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

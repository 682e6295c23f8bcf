package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/wire"
)

// Producer is the part of *kgo.Client the relay needs.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// RelayConfig configures a Relay.
type RelayConfig struct {
	Pool     *pgxpool.Pool // required
	Producer Producer      // required; idempotent, acks=all
	// Topic is the audit topic. Default wire.DefaultAuditTopic.
	Topic string
	// Batch bounds the records published per round. Default 2000.
	Batch int
	// Idle is how long the relay waits when nothing is left to publish.
	// Default 50ms.
	Idle   time.Duration
	Logger *slog.Logger
}

// Relay publishes the audit_log rows written by Writer to the audit topic,
// in the order of their transactions. One relay runs at a time (a
// PostgreSQL advisory lock); others wait to take over. Its position is the
// audit_relay row.
type Relay struct {
	cfg RelayConfig
}

// relayLock is the advisory lock key held by the active relay.
const relayLock = 0x686f6f6b5f61 // "hook_a"

// NewRelay returns a relay; Run runs it.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Pool == nil || cfg.Producer == nil {
		return nil, errors.New("audit: relay needs Pool and Producer")
	}
	if cfg.Topic == "" {
		cfg.Topic = wire.DefaultAuditTopic
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 2000
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Relay{cfg: cfg}, nil
}

// Run publishes until ctx ends. Errors (database or broker unavailable) are
// logged and retried: the table keeps every record, and the position moves
// only once the broker has acknowledged.
func (r *Relay) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := r.leader(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("audit relay", "error", err)
			backoff.Sleep(ctx, time.Second)
		}
	}
	return nil
}

// leader takes the advisory lock on one connection and publishes while it
// holds it.
func (r *Relay) leader(ctx context.Context) error {
	conn, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, relayLock).Scan(&got); err != nil {
			return err
		}
		if got {
			break
		}
		if !backoff.Sleep(ctx, time.Second) {
			return nil
		}
	}
	defer func() {
		// The lock is released with the session if this fails.
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, relayLock)
	}()
	for ctx.Err() == nil {
		n, err := r.PublishOnce(ctx, conn.Conn())
		if err != nil {
			return err
		}
		if n == 0 && !backoff.Sleep(ctx, r.cfg.Idle) {
			return nil
		}
	}
	return nil
}

// PublishOnce publishes one batch and returns how many records it
// published. Only rows of transactions older than every transaction still
// running are taken: any transaction that writes later has a higher id,
// so, taken in (xid, seq) order, no row is ever skipped. Rows go out in
// that order — a transaction's rows together, in the order written, and
// the transactions of one event in the order they ran — and the position
// moves once the broker has acknowledged all of them.
func (r *Relay) PublishOnce(ctx context.Context, conn *pgx.Conn) (int, error) {
	// The position is read each round (it is one row): a relay that took
	// over from another starts where that one stopped.
	rows, err := conn.Query(ctx, `WITH c AS (SELECT xid, seq FROM audit_relay WHERE id = 1)
SELECT `+selectColumns+`, a.xid::text, a.seq
FROM audit_log a
WHERE a.xid IS NOT NULL AND (a.xid, a.seq) > ((SELECT xid FROM c), (SELECT seq FROM c))
  AND a.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY a.xid, a.seq LIMIT $1`, pgx.QueryExecModeExec, r.cfg.Batch) // planned each time, like the consumer's look-ups
	if err != nil {
		return 0, fmt.Errorf("audit relay: read: %w", err)
	}
	var recs []*kgo.Record
	var xid string
	var seq int64
	var lastAt time.Time
	for rows.Next() {
		rec, err := scanRecord(rows, &xid, &seq)
		if err != nil {
			rows.Close()
			return 0, fmt.Errorf("audit relay: %w", err)
		}
		kr, err := rec.KafkaRecord(r.cfg.Topic)
		if err != nil {
			rows.Close()
			return 0, err
		}
		recs, lastAt = append(recs, kr), rec.At
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("audit relay: read: %w", err)
	}
	if len(recs) == 0 {
		relayLagSeconds.Set(0)
		return 0, nil
	}
	if err := r.cfg.Producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return 0, fmt.Errorf("audit relay: publish: %w", err)
	}
	if _, err := conn.Exec(ctx, `UPDATE audit_relay SET xid = $1::xid8, seq = $2, updated_at = now() WHERE id = 1`, xid, seq); err != nil {
		return 0, fmt.Errorf("audit relay: move position: %w", err)
	}
	relayPublishedTotal.Add(float64(len(recs)))
	relayLagSeconds.Set(time.Since(lastAt).Seconds())
	return len(recs), nil
}

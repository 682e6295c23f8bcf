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
	return r.publish(ctx, conn.Conn())
}

// position is a place in the (xid, seq) order of audit_log.
type position struct {
	xid string // xid8 as text
	seq int64
}

// batch is a round's records and the position after them.
type batch struct {
	recs   []*kgo.Record
	end    position
	lastAt time.Time
}

// publish publishes until ctx ends, reading the next batch while the
// broker acknowledges the one before: the read is the larger half of a
// round. A batch is produced only once the one before it is acknowledged
// and its position stored, so the topic receives the rows in order even
// across a failure; and publish never returns with a batch in flight, so
// the relay that takes over cannot publish rows that a late acknowledgement
// of this one would then follow.
func (r *Relay) publish(ctx context.Context, conn *pgx.Conn) (err error) {
	pos, err := r.position(ctx, conn)
	if err != nil {
		return err
	}
	var (
		inflight *batch
		acked    chan error
	)
	// settle waits for the batch in flight and stores its position.
	settle := func() error {
		if inflight == nil {
			return nil
		}
		b := inflight
		inflight = nil
		if err := <-acked; err != nil {
			return fmt.Errorf("audit relay: publish: %w", err)
		}
		return r.store(context.WithoutCancel(ctx), conn, b)
	}
	defer func() {
		if serr := settle(); err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	for ctx.Err() == nil {
		next, err := r.read(ctx, conn, pos)
		if err != nil {
			return err
		}
		if err := settle(); err != nil {
			return err
		}
		if len(next.recs) == 0 {
			relayLagSeconds.Set(0)
			if !backoff.Sleep(ctx, r.cfg.Idle) {
				return nil
			}
			continue
		}
		inflight, acked, pos = next, make(chan error, 1), next.end
		go func(recs []*kgo.Record, acked chan<- error) {
			acked <- r.cfg.Producer.ProduceSync(ctx, recs...).FirstErr()
		}(next.recs, acked)
	}
	return nil
}

// PublishOnce publishes one batch from the stored position and returns how
// many records it published.
func (r *Relay) PublishOnce(ctx context.Context, conn *pgx.Conn) (int, error) {
	pos, err := r.position(ctx, conn)
	if err != nil {
		return 0, err
	}
	b, err := r.read(ctx, conn, pos)
	if err != nil || len(b.recs) == 0 {
		return 0, err
	}
	if err := r.cfg.Producer.ProduceSync(ctx, b.recs...).FirstErr(); err != nil {
		return 0, fmt.Errorf("audit relay: publish: %w", err)
	}
	if err := r.store(ctx, conn, b); err != nil {
		return 0, err
	}
	return len(b.recs), nil
}

// position reads the stored position: a relay that takes over starts where
// the one before it stopped.
func (r *Relay) position(ctx context.Context, conn *pgx.Conn) (position, error) {
	var p position
	if err := conn.QueryRow(ctx, `SELECT xid::text, seq FROM audit_relay WHERE id = 1`).Scan(&p.xid, &p.seq); err != nil {
		return p, fmt.Errorf("audit relay: read position: %w", err)
	}
	return p, nil
}

// read returns the batch after from. Only rows of transactions older than
// every transaction still running are taken: any transaction that writes
// later has a higher id, so, taken in (xid, seq) order, no row is ever
// skipped. Rows go out in that order: a transaction's rows together, in the
// order written, and the transactions of one event in the order they ran.
func (r *Relay) read(ctx context.Context, conn *pgx.Conn, from position) (*batch, error) {
	rows, err := conn.Query(ctx, `SELECT `+selectColumns+`, a.xid::text, a.seq
FROM audit_log a
WHERE a.xid IS NOT NULL AND (a.xid, a.seq) > ($2::xid8, $3::bigint)
  AND a.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY a.xid, a.seq LIMIT $1`, pgx.QueryExecModeExec, r.cfg.Batch, from.xid, from.seq) // planned each time, like the consumer's look-ups
	if err != nil {
		return nil, fmt.Errorf("audit relay: read: %w", err)
	}
	defer rows.Close()
	b := &batch{end: from}
	for rows.Next() {
		rec, err := scanRecord(rows, &b.end.xid, &b.end.seq)
		if err != nil {
			return nil, fmt.Errorf("audit relay: %w", err)
		}
		kr, err := rec.KafkaRecord(r.cfg.Topic)
		if err != nil {
			return nil, err
		}
		b.recs, b.lastAt = append(b.recs, kr), rec.At
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit relay: read: %w", err)
	}
	return b, nil
}

// store moves the stored position past an acknowledged batch. The commit
// does not wait for the disk (synchronous_commit off, for this transaction
// only): a position lost in a PostgreSQL crash is an older one, from which
// the relay publishes the same rows again in the same order, so readers
// see duplicates (same audit_id) but never an older state after a newer.
func (r *Relay) store(ctx context.Context, conn *pgx.Conn, b *batch) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE audit_relay SET xid = $1::xid8, seq = $2, updated_at = now() WHERE id = 1`, b.end.xid, b.end.seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit relay: move position: %w", err)
	}
	relayPublishedTotal.Add(float64(len(b.recs)))
	relayLagSeconds.Set(time.Since(b.lastAt).Seconds())
	return nil
}

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
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

// RelayConfig configures a Relay.
type RelayConfig struct {
	Pool *pgxpool.Pool // required
	// Kafka is how the relay reaches the brokers (Brokers required). The
	// relay makes a transactional producer of its own from it each time
	// it becomes the active relay (kafka.NewTransactionalProducer); set
	// Metrics to export that client's metrics.
	Kafka kafka.Config
	// Topic is the audit topic. Default wire.DefaultAuditTopic.
	Topic string
	// TransactionalID is shared by every relay of the topic: the one that
	// becomes active fences the one before it. Default
	// "hookstream-audit-relay-" + Topic.
	TransactionalID string
	// Batch bounds the records published per round (one Kafka
	// transaction, and one stored position). Default 16000: each round
	// pays a transaction's commit and a position write, and on a backlog
	// of 200,000 events (scripts/bench-consume.sh) the relay published
	// 11.1-12.4k events/s with 2000, 13.4k with 8000 and 16.4k with 16000
	// (the relay before Kafka transactions: 15.3-15.5k). Under live
	// traffic a round takes what arrived in a Linger, so this only bounds
	// catching up.
	Batch int
	// Linger batches rounds by time under live traffic: after a round
	// that found fewer than Batch rows, the next round reads only Linger
	// after that one began, so the relay pays a Kafka transaction and a
	// position write per Linger, not per few rows. After a full round
	// (a backlog) the next one reads at once. Default 100ms, which is at
	// most what it adds to the time a committed row takes to reach the
	// topic.
	Linger time.Duration
	// Idle is how long the relay waits when nothing is left to publish.
	// Default 50ms.
	Idle   time.Duration
	Logger *slog.Logger
	// TracerProvider makes a trace of each round that publishes: its
	// span links to the spans that made its records' decisions (their
	// detail.trace_id and span_id). Default: none, no spans.
	TracerProvider trace.TracerProvider
}

// Relay publishes the audit_log rows written by Writer to the audit topic,
// in the order their transactions committed (audit_commits, see migration
// 00005), each round in one Kafka transaction. Its position is the
// audit_relay row.
//
// One relay publishes at a time, by fencing: a relay that becomes active
// initializes a transactional producer under the shared transactional id,
// which aborts the previous relay's open transaction and refuses it any
// further commit, and then increments audit_relay.epoch, which refuses it
// any further move of the position. A session advisory lock only decides
// which of the waiting relays tries next, so that they do not take turns
// fencing each other; it is not what keeps two relays apart (it dies with
// its connection while the relay that held it may still be running).
type Relay struct {
	cfg    RelayConfig
	tracer trace.Tracer // nil: no spans
}

// relayLock is the advisory lock key of the relay allowed to take over.
const relayLock = 0x686f6f6b5f61 // "hook_a"

// sendTimeout bounds a round's produce and commit; shutdown waits for it
// rather than leave a transaction open, which would hold back
// read_committed readers until the next relay starts.
const sendTimeout = 10 * time.Second

// errFenced: another relay took over; this one must stop.
var errFenced = errors.New("audit relay: fenced: another relay took over")

// NewRelay returns a relay; Run runs it.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Pool == nil || len(cfg.Kafka.Brokers) == 0 {
		return nil, errors.New("audit: relay needs Pool and Kafka.Brokers")
	}
	if cfg.Topic == "" {
		cfg.Topic = wire.DefaultAuditTopic
	}
	if cfg.TransactionalID == "" {
		cfg.TransactionalID = "hookstream-audit-relay-" + cfg.Topic
	}
	if cfg.Kafka.ClientID == "" {
		cfg.Kafka.ClientID = "hookstream-audit-relay"
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 16000
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 100 * time.Millisecond
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Relay{cfg: cfg}
	if cfg.TracerProvider != nil {
		r.tracer = cfg.TracerProvider.Tracer(tracing.TracerName)
	}
	return r, nil
}

// Run publishes until ctx ends. Errors (database or broker unavailable,
// fenced by another relay) are logged and the relay starts over: the
// table keeps every record, and the position moves only once the Kafka
// transaction has committed.
func (r *Relay) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := r.lead(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("audit relay", "error", err)
			backoff.Sleep(ctx, time.Second)
		}
	}
	return nil
}

// lead waits for its turn, takes over and publishes while nothing fails.
func (r *Relay) lead(ctx context.Context) error {
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
	t, err := r.begin(ctx, conn.Conn())
	if err != nil {
		return err
	}
	defer t.close()
	return t.run(ctx)
}

// position is a place in the (commit_seq, seq) order of audit_log.
type position struct {
	commit int64
	seq    int64
}

// batch is a round's records and the position after them.
type batch struct {
	recs   []*kgo.Record
	end    position
	lastAt time.Time
	trace  *roundTrace // nil when the relay does not trace
}

// term is one relay's time as the active relay: its producer, its epoch
// and where it is.
type term struct {
	r     *Relay
	conn  *pgx.Conn
	cl    *kgo.Client
	epoch int64
	pos   position
}

// begin fences the relay before this one, first in Kafka and then in
// PostgreSQL, and reads the position. In that order, the previous relay
// either committed its last transaction before the fence (and stored its
// position before the epoch moved, so this relay starts after it, or
// not, so this relay publishes those rows again, after them) or commits
// nothing more: the topic never gets an older row after a newer one.
func (r *Relay) begin(ctx context.Context, conn *pgx.Conn) (*term, error) {
	cl, err := kafka.NewTransactionalProducer(r.cfg.Kafka, r.cfg.TransactionalID)
	if err != nil {
		return nil, err
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("audit relay: initialize the transactional producer: %w", err)
	}
	t := &term{r: r, conn: conn, cl: cl}
	err = conn.QueryRow(ctx, `UPDATE audit_relay SET epoch = epoch + 1, updated_at = now() WHERE id = 1 RETURNING epoch, commit_seq, seq`).
		Scan(&t.epoch, &t.pos.commit, &t.pos.seq)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("audit relay: take over: %w", err)
	}
	return t, nil
}

// close drops the producer. A transaction it left open (a failed round)
// is aborted by the next relay's fence, or by the broker at its timeout.
func (t *term) close() { t.cl.Close() }

// run publishes until ctx ends. Behind (after a full round), it reads
// the next batch while the broker commits the one before: the read is
// the larger half of a round. Not behind, it settles the round in flight
// (so the position is stored as soon as the broker has committed) and
// waits out the Linger before reading. A batch is produced only once the
// one before it is committed and its position stored, so the topic
// receives the rows in order even across a failure; and run never
// returns with a batch in flight.
func (t *term) run(ctx context.Context) (err error) {
	var (
		inflight *batch
		sent     chan error
	)
	// settle waits for the batch in flight and stores its position.
	settle := func() error {
		if inflight == nil {
			return nil
		}
		b := inflight
		inflight = nil
		err := <-sent
		if err == nil {
			err = t.store(context.WithoutCancel(ctx), b)
		}
		endRound(b, err)
		return err
	}
	defer func() {
		if serr := settle(); err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	pos := t.pos
	var wake time.Time // when the next read may start; zero: at once
	for ctx.Err() == nil {
		if time.Now().Before(wake) {
			if err := settle(); err != nil {
				return err
			}
			if !backoff.Sleep(ctx, time.Until(wake)) {
				return nil
			}
		}
		start := time.Now()
		next, err := t.read(ctx, pos)
		if err != nil {
			return err
		}
		if err := settle(); err != nil {
			return err
		}
		t.startRound(next, start, time.Now())
		wake = t.nextRead(start, len(next.recs))
		if len(next.recs) == 0 {
			relayLagSeconds.Set(0)
			continue
		}
		inflight, sent, pos = next, make(chan error, 1), next.end
		go func(recs []*kgo.Record, sent chan<- error) {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
			defer cancel()
			sent <- t.send(sctx, recs)
		}(next.recs, sent)
	}
	return nil
}

// nextRead is when the round after one that began at start and read n rows
// may read: at once after a full round (a backlog is waiting), a Linger
// after the start of a partial one (rounds batch by time), Idle from now
// after an empty one.
func (t *term) nextRead(start time.Time, n int) time.Time {
	switch {
	case n == 0:
		return time.Now().Add(t.r.cfg.Idle)
	case n < t.r.cfg.Batch:
		return start.Add(t.r.cfg.Linger)
	}
	return time.Time{}
}

// send publishes recs in one Kafka transaction.
func (t *term) send(ctx context.Context, recs []*kgo.Record) error {
	if err := t.produce(ctx, recs); err != nil {
		return err
	}
	return t.commit(ctx)
}

func (t *term) produce(ctx context.Context, recs []*kgo.Record) error {
	if err := t.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("audit relay: begin transaction: %w", err)
	}
	if err := t.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("audit relay: publish: %w", err)
	}
	return nil
}

func (t *term) commit(ctx context.Context) error {
	if err := t.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("audit relay: commit: %w", err)
	}
	return nil
}

// read returns the batch after from: the rows of the transactions that
// committed after it, in commit order, each transaction's rows in the
// order written. commit_seq has no gaps and no snapshot sees a number
// without those below it, so reading from the position never skips a
// row. The lateral join probes audit_log's (xid, seq) index per
// transaction whatever the statistics say.
func (t *term) read(ctx context.Context, from position) (*batch, error) {
	rows, err := t.conn.Query(ctx, `SELECT `+selectColumns+`, c.commit_seq, a.seq
FROM (SELECT commit_seq, xid FROM audit_commits WHERE commit_seq >= $2 ORDER BY commit_seq LIMIT $1) c
CROSS JOIN LATERAL (SELECT * FROM audit_log a WHERE a.xid = c.xid AND (c.commit_seq > $2 OR a.seq > $3)) a
ORDER BY c.commit_seq, a.seq LIMIT $1`, t.r.cfg.Batch, from.commit, from.seq)
	if err != nil {
		return nil, fmt.Errorf("audit relay: read: %w", err)
	}
	defer rows.Close()
	b := &batch{end: from}
	if t.r.tracer != nil {
		b.trace = &roundTrace{}
	}
	for rows.Next() {
		rec, err := scanRecord(rows, &b.end.commit, &b.end.seq)
		if err != nil {
			return nil, fmt.Errorf("audit relay: %w", err)
		}
		kr, err := rec.KafkaRecord(t.r.cfg.Topic)
		if err != nil {
			return nil, err
		}
		b.recs, b.lastAt = append(b.recs, kr), rec.At
		if b.trace != nil {
			b.trace.link(rec.Detail)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit relay: read: %w", err)
	}
	return b, nil
}

// store moves the stored position past a committed batch, if this relay
// has not been fenced. The commit does not wait for the disk
// (synchronous_commit off, for this transaction only): a position lost in
// a PostgreSQL crash is an older one, from which the relay publishes the
// same rows again in the same order, so readers see duplicates (same
// audit_id) but never an older state after a newer.
func (t *term) store(ctx context.Context, b *batch) (err error) {
	span := t.startStore(b)
	defer func() { endWith(span, err) }()
	var moved int64
	err = pgx.BeginFunc(ctx, t.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE audit_relay SET commit_seq = $1, seq = $2, updated_at = now() WHERE id = 1 AND epoch = $3`,
			b.end.commit, b.end.seq, t.epoch)
		moved = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("audit relay: move position: %w", err)
	}
	if moved == 0 {
		return errFenced
	}
	relayPublishedTotal.Add(float64(len(b.recs)))
	relayRoundRecords.Observe(float64(len(b.recs)))
	relayLagSeconds.Set(time.Since(b.lastAt).Seconds())
	return nil
}

// Unpublished counts the committed audit_log rows the relay has not
// published yet.
func Unpublished(ctx context.Context, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM audit_relay r
JOIN audit_commits c ON c.commit_seq >= r.commit_seq
JOIN audit_log a ON a.xid = c.xid AND (c.commit_seq, a.seq) > (r.commit_seq, r.seq)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("audit: count unpublished rows: %w", err)
	}
	return n, nil
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is an event's state in the events table; "" means not there.
type Status string

// Event statuses (docs/design.md, "PostgreSQL").
const (
	StatusUnknown    Status = ""
	StatusProcessing Status = "PROCESSING"
	StatusProcessed  Status = "PROCESSED"
	StatusFailed     Status = "FAILED"
	StatusDead       Status = "DEAD"
	StatusParked     Status = "PARKED"
)

// DuplicateChecker answers whether an event was seen before. The receiver
// only reads: the consumer's claim is what makes processing effectively
// once, so the check decides the reply (409 vs 202), never correctness.
type DuplicateChecker interface {
	// Lookup calls fn once with the event's status, or the error that
	// kept the checker from knowing it, within a time the checker bounds
	// itself. fn may be called from another goroutine, or before Lookup
	// returns, and should return quickly.
	Lookup(source, eventID string, fn func(Status, error))
}

// PostgresDuplicates looks events up in the events table. Look-ups that
// arrive while a query is running are answered together by the next query
// (one round trip for many requests), so under load the cost per request
// falls instead of the pool running dry. It adds no waiting of its own: a
// look-up on an idle checker is sent at once.
type PostgresDuplicates struct {
	pool    *pgxpool.Pool
	reqs    chan *lookup
	maxWait time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup
}

type lookup struct {
	source, eventID string
	fn              func(Status, error)
	answered        atomic.Bool
	timeout         *time.Timer
}

// answer calls fn unless the look-up was answered already (it timed out,
// or the checker closed).
func (l *lookup) answer(st Status, err error) {
	if l.answered.CompareAndSwap(false, true) {
		l.timeout.Stop()
		l.fn(st, err)
	}
}

// expire is the timeout's answer.
func (l *lookup) expire() {
	if l.answered.CompareAndSwap(false, true) {
		l.fn("", ErrTimeout)
	}
}

// PostgresDuplicatesConfig configures PostgresDuplicates.
type PostgresDuplicatesConfig struct {
	// Workers is how many queries may run at once. Default 1: one query
	// in flight answers everything that queued behind it, which under load
	// makes batches larger and round trips fewer.
	Workers int
	// MaxBatch bounds the look-ups one query answers. Default 256.
	MaxBatch int
	// Timeout bounds a look-up: the wait for a worker plus its query. When
	// it fails or times out the receiver accepts the event anyway (the
	// consumer's claim still dedupes it) and its audit record says so.
	// Default 1s.
	Timeout time.Duration
}

// NewPostgresDuplicates starts the batching workers; Close stops them.
func NewPostgresDuplicates(pool *pgxpool.Pool, cfg PostgresDuplicatesConfig) *PostgresDuplicates {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 256
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	d := &PostgresDuplicates{
		pool:    pool,
		reqs:    make(chan *lookup, cfg.MaxBatch*cfg.Workers),
		maxWait: cfg.Timeout,
		stop:    make(chan struct{}),
	}
	for range cfg.Workers {
		d.wg.Add(1)
		go d.work(cfg.MaxBatch)
	}
	return d
}

// ErrClosed is returned by look-ups after Close.
var ErrClosed = errors.New("ingest: duplicate checker closed")

// ErrTimeout is returned by a look-up that took longer than the Timeout.
var ErrTimeout = errors.New("ingest: duplicate check timed out")

// Lookup implements DuplicateChecker: fn is called within the configured
// Timeout, from a worker or a timer (or at once, after Close). Lookup itself
// waits only while the queue of look-ups is full, and no longer than the
// Timeout.
func (d *PostgresDuplicates) Lookup(source, eventID string, fn func(Status, error)) {
	l := &lookup{source: source, eventID: eventID, fn: fn}
	select {
	case <-d.stop:
		fn("", ErrClosed)
		return
	default:
	}
	l.timeout = time.AfterFunc(d.maxWait, l.expire)
	select {
	case d.reqs <- l:
		return
	default:
	}
	full := time.NewTimer(d.maxWait)
	defer full.Stop()
	select {
	case d.reqs <- l:
	case <-full.C:
		l.answer("", ErrTimeout)
	case <-d.stop:
		l.answer("", ErrClosed)
	}
}

// Status looks one event up and waits for the answer, or for ctx.
func (d *PostgresDuplicates) Status(ctx context.Context, source, eventID string) (Status, error) {
	type result struct {
		st  Status
		err error
	}
	done := make(chan result, 1)
	d.Lookup(source, eventID, func(st Status, err error) { done <- result{st, err} })
	select {
	case r := <-done:
		return r.st, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Close stops the workers; pending look-ups fail with ErrClosed.
func (d *PostgresDuplicates) Close() {
	close(d.stop)
	d.wg.Wait()
}

func (d *PostgresDuplicates) work(maxBatch int) {
	defer d.wg.Done()
	batch := make([]*lookup, 0, maxBatch)
	for {
		select {
		case <-d.stop:
			d.drain()
			return
		case l := <-d.reqs:
			batch = append(batch[:0], l)
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case l := <-d.reqs:
				batch = append(batch, l)
			default:
				break fill
			}
		}
		d.query(batch)
	}
}

func (d *PostgresDuplicates) drain() {
	for {
		select {
		case l := <-d.reqs:
			l.answer("", ErrClosed)
		default:
			return
		}
	}
}

// statusQuery looks each key up on its own: OFFSET 0 keeps the subquery
// from being turned into a join, so no plan scans the table. A cached
// generic plan made while events was small did (8 ms per look-up at 40k
// rows, against 0.1 ms).
const statusQuery = `SELECT e.source, e.event_id, e.status
FROM unnest($1::text[], $2::text[]) AS k(source, event_id)
CROSS JOIN LATERAL (
  SELECT source, event_id, status FROM events
  WHERE source = k.source AND event_id = k.event_id OFFSET 0
) e`

func (d *PostgresDuplicates) query(batch []*lookup) {
	ctx, cancel := context.WithTimeout(context.Background(), d.maxWait)
	defer cancel()
	srcs := make([]string, len(batch))
	ids := make([]string, len(batch))
	for i, l := range batch {
		srcs[i], ids[i] = l.source, l.eventID
	}
	found := make(map[[2]string]Status, len(batch))
	rows, err := d.pool.Query(ctx, statusQuery, srcs, ids)
	if err == nil {
		var src, id, st string
		_, err = pgx.ForEachRow(rows, []any{&src, &id, &st}, func() error {
			found[[2]string{src, id}] = Status(st)
			return nil
		})
	}
	if err != nil {
		err = fmt.Errorf("ingest: duplicate check: %w", err)
	}
	for _, l := range batch {
		l.answer(found[[2]string{l.source, l.eventID}], err)
	}
}

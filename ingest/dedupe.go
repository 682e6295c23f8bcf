package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is an event's state in the events table; "" means not there.
type Status string

// Event statuses (DESIGN.md, "PostgreSQL").
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
	Status(ctx context.Context, source, eventID string) (Status, error)
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
	done            chan lookupResult
}

type lookupResult struct {
	status Status
	err    error
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

// Status implements DuplicateChecker. It returns within the configured
// Timeout, or when ctx ends.
func (d *PostgresDuplicates) Status(ctx context.Context, source, eventID string) (Status, error) {
	l := &lookup{source: source, eventID: eventID, done: make(chan lookupResult, 1)}
	t := time.NewTimer(d.maxWait)
	defer t.Stop()
	select {
	case d.reqs <- l:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", ErrTimeout
	case <-d.stop:
		return "", ErrClosed
	}
	select {
	case r := <-l.done:
		return r.status, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", ErrTimeout
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
			l.done <- lookupResult{err: ErrClosed}
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
	for _, l := range batch {
		if err != nil {
			l.done <- lookupResult{err: fmt.Errorf("ingest: duplicate check: %w", err)}
			continue
		}
		l.done <- lookupResult{status: found[[2]string{l.source, l.eventID}]}
	}
}

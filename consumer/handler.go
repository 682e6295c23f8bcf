package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Event is one accepted webhook as the consumer hands it to a Handler.
type Event struct {
	Source     string
	EventID    string
	CustomerID string
	EventType  string
	// Body is the request body, byte for byte.
	Body []byte
	// Headers are the record's metadata headers (event-id, source, …).
	Headers map[string]string
	// Partition and Offset locate the record in the events topic.
	Partition  int32
	Offset     int64
	ReceivedAt time.Time
	// Attempt counts from 1.
	Attempt int
	// Redrive is set on an event the receiver accepted again after it had
	// FAILED or gone DEAD.
	Redrive bool

	// floor is the first events bucket that can hold a row of the event
	// (wire.HeaderBucket); 0: any.
	floor int32

	// trace is the span of this attempt, nil when the consumer does not
	// trace (trace.go).
	trace *attemptTrace
}

// Handler processes an event. tx commits together with the event's
// PROCESSED mark, so writes made through it happen exactly once. An error
// rolls them back; the event is retried unless the error is Permanent.
type Handler interface {
	Handle(ctx context.Context, tx pgx.Tx, ev *Event) error
}

// Deliverer processes an event outside any transaction: an HTTP
// destination, or any side effect PostgreSQL cannot roll back. The
// consumer records the outcome in a transaction of its own after the call,
// so no transaction is held open for the length of a call. The price is
// at-least-once: a crash, or a member that lost its partition, between the
// call and the outcome's commit means the event is delivered again (in
// order, with the same event id). Deliverers use ev.EventID as their
// idempotency key.
type Deliverer interface {
	Deliver(ctx context.Context, ev *Event) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, tx pgx.Tx, ev *Event) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, tx pgx.Tx, ev *Event) error { return f(ctx, tx, ev) }

// NoopHandler processes every event by doing nothing: the event still goes
// PROCESSED, deduped and audited.
var NoopHandler = HandlerFunc(func(context.Context, pgx.Tx, *Event) error { return nil })

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the event goes DEAD at once.
func Permanent(err error) error { return &permanentError{err: err} }

// retryAfterError asks for the next attempt no sooner than After.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps a transient err with the earliest time to retry (for
// example a destination's Retry-After).
func RetryAfter(err error, after time.Duration) error {
	return &retryAfterError{err: err, after: after}
}

// Retryable reports whether err may succeed on another attempt.
func Retryable(err error) bool {
	var p *permanentError
	return err != nil && !errors.As(err, &p)
}

func retryAfter(err error) time.Duration {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after
	}
	return 0
}

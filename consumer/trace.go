package consumer

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

// The consumer's spans (docs/design.md, "Tracing"): every attempt at an
// event is a span "process <events topic>" whose parent is the event's
// trace context, the traceparent and tracestate it carries in its record
// headers (kept with the event when it is stored FAILED or PARKED). So the
// first attempt, every retry and an attempt after a replay or a re-sent
// event all belong to the trace of the request that accepted the event.
// An event without a valid traceparent starts a trace of its own, written
// into its headers so that its later attempts join it.
//
// The attempt's children: lookup (the read of the batch's states), the
// handler ("handle") or the destination call ("POST", http.go), and
// record (the transaction that records the outcome); lookup and record
// are PostgreSQL client spans (db.system.name, db.operation.name). A batch
// reads and
// records all its events at once, so their lookup and record spans share
// their times (hookstream.batch.events says how many shared them).
//
// Nothing here runs when the Consumer has no TracerProvider: ev.trace
// stays nil.

// attemptTrace is the span of one attempt at an event.
type attemptTrace struct {
	ctx   context.Context
	span  trace.Span
	ended bool
}

// Why an attempt ran (tracing.AttrTrigger).
const (
	triggerRecord = "record" // read from the events topic
	triggerStep   = "step"   // a blocked customer's retry or drain
)

// startAttempt starts the span of an attempt at ev, at start.
func (c *Consumer) startAttempt(ev *Event, trigger string, start time.Time) {
	parent := tracing.Extract(context.Background(), ev.Headers[wire.HeaderTraceparent], ev.Headers[wire.HeaderTracestate])
	ctx, span := c.tracer.Start(parent, "process "+c.cfg.Topics.Events,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start),
		trace.WithAttributes(semconv.MessagingSystemKafka, semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess, semconv.MessagingDestinationName(c.cfg.Topics.Events),
			semconv.MessagingConsumerGroupName(c.cfg.Group),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(ev.Partition))), semconv.MessagingKafkaOffset(int(ev.Offset)),
			tracing.AttrSource.String(ev.Source), tracing.AttrEventID.String(ev.EventID), tracing.AttrTrigger.String(trigger)))
	ev.trace = &attemptTrace{ctx: ctx, span: span}
	if !trace.SpanContextFromContext(parent).IsValid() {
		// A trace begins here: the event's later attempts continue it.
		if ev.Headers == nil {
			ev.Headers = map[string]string{}
		}
		ev.Headers[wire.HeaderTraceparent], ev.Headers[wire.HeaderTracestate] = tracing.Inject(ctx)
		if ev.Headers[wire.HeaderTracestate] == "" {
			delete(ev.Headers, wire.HeaderTracestate)
		}
	}
}

// startAttempts starts the attempts of a batch's events.
func (c *Consumer) startAttempts(evs []*Event, start time.Time) {
	for _, ev := range evs {
		c.startAttempt(ev, triggerRecord, start)
	}
}

// abandonAttempts ends the spans of evs still open: the batch or step
// stopped before recording them, and they run again.
func abandonAttempts(evs ...*Event) {
	for _, ev := range evs {
		if ev.trace != nil && !ev.trace.ended {
			ev.trace.span.SetAttributes(tracing.AttrOutcome.String("abandoned"))
			ev.trace.end()
		}
	}
}

func (t *attemptTrace) end() {
	t.ended = true
	t.span.End()
}

// dbSpan is a part of an attempt's PostgreSQL work: a client span with
// the database attributes (tracing.DBAttrs), as the receiver's duplicate
// check and the audit relay's reads and writes have.
type dbSpan struct {
	name  string
	attrs []attribute.KeyValue
}

var (
	// spanLookup reads the customers' blocks and the events' states (a
	// step: its customer's row and its event, locked).
	spanLookup = dbSpan{"lookup", tracing.DBAttrs("SELECT", "customer_blocks", "events")}
	// spanRecord is the transaction that records the outcome: statements
	// of several kinds (events, audit_log, customer_blocks, the position)
	// and the commit.
	spanRecord = dbSpan{"record", tracing.DBAttrs("BATCH")}
)

// stepSpan adds a child span of ev's attempt over [start, end]: a part of
// the work that ev shared with n events.
func (c *Consumer) stepSpan(ev *Event, s dbSpan, start, end time.Time, n int) {
	_, span := c.tracer.Start(ev.trace.ctx, s.name, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(s.attrs...), trace.WithAttributes(tracing.AttrBatchEvents.Int(n)))
	span.End(trace.WithTimestamp(end))
}

// batchTimes are when a batch's shared parts ran.
type batchTimes struct {
	lookup, lookedUp, record, recorded time.Time
}

// tracedBatch ends the attempts of a committed batch (or group), with
// their lookup and record spans.
func (c *Consumer) tracedBatch(res []result, dups []*Event, t batchTimes) {
	n := len(res) + len(dups)
	finish := func(ev *Event, outcome string, f *failure) {
		if ev.trace == nil || ev.trace.ended {
			return
		}
		c.stepSpan(ev, spanLookup, t.lookup, t.lookedUp, n)
		c.stepSpan(ev, spanRecord, t.record, t.recorded, n)
		c.endAttempt(ev, outcome, f)
	}
	for i := range res {
		r := &res[i]
		switch r.verdict {
		case processed:
			finish(r.ev, "processed", nil)
		case duplicate:
			finish(r.ev, "duplicate", nil)
		case parked:
			finish(r.ev, "parked", nil)
		case redriven:
			finish(r.ev, "requeued", nil)
		case failed:
			finish(r.ev, "", &r.f)
		}
	}
	for _, ev := range dups {
		finish(ev, "duplicate", nil)
	}
}

// endAttempt ends ev's attempt with its outcome; a failure names its
// error (redacted, as everywhere it is shown).
func (c *Consumer) endAttempt(ev *Event, outcome string, f *failure) {
	span := ev.trace.span
	if f != nil {
		outcome = "failed"
		if f.dead {
			outcome = "dead"
		}
		span.SetAttributes(semconv.ErrorTypeOther)
		span.SetStatus(codes.Error, f.msg)
	}
	span.SetAttributes(tracing.AttrOutcome.String(outcome))
	if ev.Attempt > 0 {
		span.SetAttributes(tracing.AttrAttempt.Int(ev.Attempt))
	}
	ev.trace.end()
}

// linkRedrive links the attempt that read a re-sent event to the trace of
// the event it re-drives, whose context the stored event holds.
func linkRedrive(ev *Event, rq *requeued) {
	if ev.trace == nil {
		return
	}
	sc := trace.SpanContextFromContext(tracing.Extract(context.Background(), rq.traceparent, rq.tracestate))
	if sc.IsValid() && sc.TraceID() != ev.trace.span.SpanContext().TraceID() {
		ev.trace.span.AddLink(trace.Link{SpanContext: sc})
	}
}

// traceID is the trace id of ev's attempt, "" when it is not traced.
func (ev *Event) traceID() string {
	if ev.trace == nil {
		return ""
	}
	return tracing.TraceID(ev.trace.span.SpanContext())
}

// logFor is the consumer's logger for lines about ev: with its trace_id
// when it is traced.
func (c *Consumer) logFor(ev *Event) *slog.Logger {
	if id := ev.traceID(); id != "" {
		return c.log.With("trace_id", id)
	}
	return c.log
}

// callContext is ctx with ev's attempt as the current span, so that the
// handler's or the destination call's spans are its children.
func callContext(ctx context.Context, ev *Event) context.Context {
	if ev.trace == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, ev.trace.span)
}

package audit

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/tracing"
)

// maxLinks bounds the links of a round's span to the SDK's default link
// limit (OTEL_SPAN_LINK_COUNT_LIMIT): a round catching up holds up to
// Batch records, and a span with thousands of links is one no backend
// shows. The rest are counted in hookstream.batch.links_dropped.
const maxLinks = 128

// roundTrace is the trace of one round: a publish batch is a trace of its
// own, not a child of any event's, since it carries the decisions of many
// (docs/design.md, "Tracing"); it links to the spans that made them.
type roundTrace struct {
	ctx     context.Context // the round's span
	links   []trace.Link
	dropped int
}

// link records a link to the span that made rec's decision, when the
// record names one.
func (rt *roundTrace) link(detail map[string]any) {
	sc, ok := tracing.DecisionSpan(detail)
	if !ok {
		return
	}
	if len(rt.links) == maxLinks {
		rt.dropped++
		return
	}
	rt.links = append(rt.links, trace.Link{SpanContext: sc})
}

// startRound starts b's span, "send <topic>", at the start of its read, and
// records the read as its child. Nothing without a tracer or without
// records: an idle relay makes no trace.
func (t *term) startRound(b *batch, start, read time.Time) {
	if b.trace == nil || len(b.recs) == 0 {
		return
	}
	ctx, _ := t.r.tracer.Start(context.Background(), "send "+t.r.cfg.Topic,
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithTimestamp(start),
		trace.WithLinks(b.trace.links...),
		trace.WithAttributes(semconv.MessagingSystemKafka, semconv.MessagingOperationName("send"),
			semconv.MessagingOperationTypeSend, semconv.MessagingDestinationName(t.r.cfg.Topic),
			semconv.MessagingBatchMessageCount(len(b.recs)),
			tracing.AttrBatchLinksDropped.Int(b.trace.dropped)))
	b.trace.ctx = ctx
	_, rs := t.r.tracer.Start(ctx, "SELECT audit_log", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(start), trace.WithAttributes(tracing.DBAttrs("SELECT", "audit_log")...))
	rs.End(trace.WithTimestamp(read))
}

// startStore starts the span of b's position write, a no-op span when b
// has no trace.
func (t *term) startStore(b *batch) trace.Span {
	if b.trace == nil || b.trace.ctx == nil {
		return trace.SpanFromContext(context.Background())
	}
	_, span := t.r.tracer.Start(b.trace.ctx, "UPDATE audit_relay", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.DBAttrs("UPDATE", "audit_relay")...))
	return span
}

// endRound ends b's span: an error when the round failed (the broker, the
// position write, a fence), and the round runs again.
func endRound(b *batch, err error) {
	if b.trace == nil || b.trace.ctx == nil {
		return
	}
	span := trace.SpanFromContext(b.trace.ctx)
	endWith(span, err)
}

// endWith ends span, marked as failed when err is not nil.
func endWith(span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeOther)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

package ingest

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/tracing"
)

// The receiver's spans (docs/design.md, "Tracing"): one server span per
// request, continuing the provider's trace when its traceparent is valid
// (a new trace otherwise), with the checks, the duplicate check and each
// produce as its children. The event record's traceparent names the
// request span, so the consumer's processing is its child.
//
// Every function here runs only when the receiver has a tracer (the
// callers check req.trace or the flight's): with tracing
// off, a request allocates nothing more than it did before tracing.

const webhookRoute = "/webhooks/:source"

// requestTrace is a request's span and its context.
type requestTrace struct {
	ctx  context.Context
	span trace.Span
}

// flightTrace is the spans of a flight's stages.
type flightTrace struct {
	ctx          context.Context // the request's
	lookup, send trace.Span
}

// startRequest starts req's server span. Its url.path and
// user_agent.original are the client's, unauthenticated: cut to
// tracing.MaxAttrLen bytes.
func (r *Receiver) startRequest(req *request) {
	hr := req.c.Request
	ctx := tracing.Propagator.Extract(hr.Context(), propagation.HeaderCarrier(hr.Header))
	scheme := "http"
	if hr.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodPost, semconv.HTTPRoute(webhookRoute),
		semconv.URLPath(tracing.Bounded(hr.URL.Path)), semconv.URLScheme(scheme),
	}
	if ua := hr.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(tracing.Bounded(ua)))
	}
	if _, ok := r.sources[req.sourceName]; ok {
		attrs = append(attrs, tracing.AttrSource.String(req.sourceName))
	}
	req.trace = &requestTrace{}
	req.trace.ctx, req.trace.span = r.tracer.Start(ctx, http.MethodPost+" "+webhookRoute,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// endRequest ends req's server span with the answer's status: an error
// only for a 5xx (a 4xx is the client's, per the HTTP conventions).
func (r *Receiver) endRequest(req *request) {
	status := req.c.Writer.Status()
	span := req.trace.span
	span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if req.eventID != "" {
		span.SetAttributes(tracing.AttrEventID.String(req.eventID))
	}
	if req.addr.IsValid() {
		span.SetAttributes(semconv.ClientAddress(req.addr.String()))
	}
	if status >= 500 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// checkTraced is check inside a span of its own.
func (r *Receiver) checkTraced(req *request) (*rejection, map[string]any) {
	if req.trace == nil {
		return r.check(req)
	}
	_, span := r.tracer.Start(req.trace.ctx, "check")
	rej, detail := r.check(req)
	if rej != nil {
		span.SetAttributes(tracing.AttrReason.String(rej.code))
	}
	span.End()
	return rej, detail
}

// startLookup starts the duplicate check's span, a PostgreSQL read.
func (r *Receiver) startLookup(ctx context.Context) trace.Span {
	_, span := r.tracer.Start(ctx, "SELECT events", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(tracing.DBAttrs("SELECT", "events")...))
	return span
}

func endLookup(span trace.Span, status Status, err error) {
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeOther)
		span.SetStatus(codes.Error, err.Error())
	} else if status != StatusUnknown {
		span.SetAttributes(tracing.AttrEventStatus.String(string(status)))
	}
	span.End()
}

// startSend starts the span of a produce to topic.
func (r *Receiver) startSend(ctx context.Context, topic string) trace.Span {
	_, span := r.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(semconv.MessagingSystemKafka, semconv.MessagingOperationName("send"),
			semconv.MessagingOperationTypeSend, semconv.MessagingDestinationName(topic)))
	return span
}

// endSend ends a produce's span with where the broker put the record.
func endSend(span trace.Span, rec *kgo.Record, err error) {
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeOther)
		span.SetStatus(codes.Error, err.Error())
	} else if rec != nil {
		span.SetAttributes(semconv.MessagingDestinationPartitionID(strconv.Itoa(int(rec.Partition))),
			semconv.MessagingKafkaOffset(int(rec.Offset)))
	}
	span.End()
}

// traceID is the trace id of req's span, "" without one.
func (req *request) traceID() string {
	if req.trace == nil {
		return ""
	}
	return tracing.TraceID(req.trace.span.SpanContext())
}

// logFor is the receiver's logger for lines about req: with its trace_id
// when it is traced.
func (r *Receiver) logFor(req *request) *slog.Logger {
	if id := req.traceID(); id != "" {
		return r.log.With("trace_id", id)
	}
	return r.log
}

// withTraceID adds the ids of req's span to an audit record's detail:
// trace_id and span_id (tracing.WithDecision).
func (req *request) withTraceID(detail map[string]any) map[string]any {
	if req.trace == nil {
		return detail
	}
	return tracing.WithDecision(detail, req.trace.span.SpanContext())
}

// eventTraceHeaders are the traceparent and tracestate of req's event
// record: the request span's context when traced; with tracing off, the
// provider's own when its traceparent is valid, unchanged, and none
// otherwise.
func (req *request) eventTraceHeaders() (traceparent, tracestate string) {
	if req.trace != nil {
		return tracing.Inject(req.trace.ctx)
	}
	h := req.c.Request.Header
	if tp := h.Get("Traceparent"); tracing.ValidTraceparent(tp) {
		if ts := h.Get("Tracestate"); tracing.PassableTracestate(ts) {
			return tp, ts
		}
		return tp, ""
	}
	return "", ""
}

package tracing

import (
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/wire"
)

// WithDecision adds the ids of sc, the span that made an audit record's
// decision, to the record's detail: trace_id, by which an operator finds
// the event's trace, and span_id, which the audit relay's publish span
// links to. detail is returned as it is when sc is not valid (the process
// does not trace); a nil detail is made when needed.
func WithDecision(detail map[string]any, sc trace.SpanContext) map[string]any {
	if !sc.IsValid() {
		return detail
	}
	if detail == nil {
		detail = make(map[string]any, 2)
	}
	detail[wire.DetailTraceID] = sc.TraceID().String()
	detail[wire.DetailSpanID] = sc.SpanID().String()
	return detail
}

// DecisionSpan is the span context named by an audit record's detail
// (WithDecision), marked remote; false when the detail names none or
// names it badly (a record of a process that did not trace, or of a
// version before span_id).
func DecisionSpan(detail map[string]any) (trace.SpanContext, bool) {
	tid, _ := detail[wire.DetailTraceID].(string)
	sid, _ := detail[wire.DetailSpanID].(string)
	if tid == "" || sid == "" {
		return trace.SpanContext{}, false
	}
	t, err := trace.TraceIDFromHex(tid)
	if err != nil {
		return trace.SpanContext{}, false
	}
	s, err := trace.SpanIDFromHex(sid)
	if err != nil {
		return trace.SpanContext{}, false
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: t, SpanID: s, Remote: true}), true
}

package tracing

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// Inject returns the W3C headers of the span context in ctx: traceparent
// ("" when ctx has none) and tracestate ("" when empty).
func Inject(ctx context.Context) (traceparent, tracestate string) {
	var c pair
	Propagator.Inject(ctx, &c)
	return c.traceparent, c.tracestate
}

// Extract returns ctx with the remote span context of the two headers,
// or ctx as it is when traceparent is absent or invalid (a span started
// from it begins a new trace).
func Extract(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, &pair{traceparent: traceparent, tracestate: tracestate})
}

// pair carries the two W3C headers.
type pair struct{ traceparent, tracestate string }

func (p *pair) Get(key string) string {
	switch key {
	case "traceparent":
		return p.traceparent
	case "tracestate":
		return p.tracestate
	}
	return ""
}

func (p *pair) Set(key, value string) {
	switch key {
	case "traceparent":
		p.traceparent = value
	case "tracestate":
		p.tracestate = value
	}
}

func (p *pair) Keys() []string { return []string{"traceparent", "tracestate"} }

// TraceID is the trace id of sc in hex, or "" when sc is not valid.
func TraceID(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// ValidTraceparent reports whether s is a traceparent that the W3C
// propagator accepts (Extract), without allocating: with tracing off the
// receiver passes a valid one on unchanged and drops any other. Version
// 00 has exactly four fields and flags up to 03; a later version (up to
// fe) may have more fields after a dash.
func ValidTraceparent(s string) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if !lowerHex(s[0:2]) || s[0:2] == "ff" || !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) {
		return false
	}
	if s[0:2] == "00" {
		if len(s) != 55 || s[53] != '0' || s[54] > '3' {
			return false
		}
	} else if len(s) > 55 && s[55] != '-' {
		return false
	}
	return !allZero(s[3:35]) && !allZero(s[36:52])
}

// PassableTracestate reports whether s may travel on with a valid
// traceparent while tracing is off: at most 512 bytes (the W3C limit a
// propagator must keep) of printable ASCII. Its members are not checked:
// a tracestate belongs to the vendors that wrote it.
func PassableTracestate(s string) bool {
	if len(s) > 512 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// Package wire holds the types that cross process boundaries between
// hookstream's components: Kafka topic names, record header names and the
// audit record. ingest, consumer and audit all speak it and never import each
// other.
package wire

// Default topic names (docs/design.md, "Kafka").
const (
	DefaultEventsTopic = "hookstream.events"
	DefaultDLQTopic    = "hookstream.dlq"
	DefaultAuditTopic  = "hookstream.audit"
)

// Topics names the three topics hookstream uses. Operators (and tests) may
// rename them; the zero value means the defaults.
type Topics struct {
	Events string
	DLQ    string
	Audit  string
}

// WithDefaults fills empty names with the Default*Topic constants.
func (t Topics) WithDefaults() Topics {
	if t.Events == "" {
		t.Events = DefaultEventsTopic
	}
	if t.DLQ == "" {
		t.DLQ = DefaultDLQTopic
	}
	if t.Audit == "" {
		t.Audit = DefaultAuditTopic
	}
	return t
}

// Record header names on hookstream.events (and hookstream.dlq).
const (
	HeaderEventID     = "event-id"
	HeaderSource      = "source"
	HeaderCustomerID  = "customer-id"
	HeaderEventType   = "event-type"
	HeaderReceivedAt  = "received-at" // RFC 3339 with nanoseconds, UTC
	HeaderRequestID   = "request-id"  // the receiver's own id, never a client's X-Request-Id
	HeaderContentType = "content-type"
	// HeaderTraceparent and HeaderTracestate are the W3C trace context of
	// the event (docs/design.md, "Tracing").
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	// HeaderRedrive is set to "true" on an event the receiver produced again
	// because the provider re-sent an event that had FAILED or gone DEAD.
	HeaderRedrive = "redrive"
	// HeaderAudit carries the receiver's decision about the record (its
	// ACCEPTED or RETRY_ACCEPTED audit record, as JSON): the decision
	// travels with the event, so one cannot be durable without the other.
	// The consumer writes it to audit_log in its first transaction for the
	// record, and the relay publishes it from there.
	HeaderAudit = "audit-record"
	// HeaderBucket is the events bucket (docs/design.md, "Retention") the
	// receiver knew to be current, or older, before its duplicate check
	// found nothing for the event: a row of the event the check did not
	// see is in that bucket or a later one, so the consumer's claim looks
	// only there. Absent (every bucket) when the check failed or found
	// the event.
	HeaderBucket = "events-bucket"
)

// Record header names on hookstream.audit.
const (
	HeaderAuditAction        = "action"
	HeaderAuditActor         = "actor"
	HeaderAuditSchemaVersion = "schema-version"
)

package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// AuditSchemaVersion is the schema_version of the audit records this build
// writes (schemas/json/audit-record.schema.json). Version 2: request_id is
// always the server's own id, a client's X-Request-Id is
// detail.client_request_id, and the topic's key is Key's.
const AuditSchemaVersion = 2

// Action is what an audit record says happened.
type Action string

// The audit actions of docs/design.md.
const (
	ActionAccepted       Action = "ACCEPTED"
	ActionRejected       Action = "REJECTED"
	ActionDuplicate      Action = "DUPLICATE"
	ActionRetryAccepted  Action = "RETRY_ACCEPTED"
	ActionProcessing     Action = "PROCESSING"
	ActionProcessed      Action = "PROCESSED"
	ActionFailed         Action = "FAILED"
	ActionRetryScheduled Action = "RETRY_SCHEDULED"
	ActionDeadLettered   Action = "DEAD_LETTERED"
	ActionParked         Action = "PARKED"
	ActionUnparked       Action = "UNPARKED"
	ActionReplayed       Action = "REPLAYED"
)

// Actor is the component that made a decision.
type Actor string

// Actors.
const (
	ActorIngest   Actor = "ingest"
	ActorConsumer Actor = "consumer"
	ActorAdmin    Actor = "admin"
)

// AuditRecord is one decision, as published to hookstream.audit and stored in
// audit_log. Its JSON form is schemas/json/audit-record.schema.json.
// RequestID is the id the receiver gave the request, never one a client
// sent (that one is the detail DetailClientRequestID).
type AuditRecord struct {
	SchemaVersion int            `json:"schema_version"`
	AuditID       string         `json:"audit_id"`
	EventID       string         `json:"event_id,omitempty"`
	Source        string         `json:"source,omitempty"`
	CustomerID    string         `json:"customer_id,omitempty"`
	EventType     string         `json:"event_type,omitempty"`
	Action        Action         `json:"action"`
	Reason        string         `json:"reason,omitempty"`
	HTTPStatus    int            `json:"http_status,omitempty"`
	Attempt       int            `json:"attempt,omitempty"`
	Partition     *int32         `json:"partition,omitempty"`
	Offset        *int64         `json:"offset,omitempty"`
	Actor         Actor          `json:"actor"`
	Instance      string         `json:"instance"`
	RequestID     string         `json:"request_id,omitempty"`
	At            time.Time      `json:"at"`
	Detail        map[string]any `json:"detail,omitempty"`
}

// DetailClientRequestID is the detail key of the X-Request-Id a client
// sent, recorded as it came (never a key, never the record's request_id).
const DetailClientRequestID = "client_request_id"

// DetailReceiverAt is the detail key of the time a receiver gave its
// decision when the consumer wrote it at its own time instead: a time
// where audit_log has no partition (consumer.writeDecisions).
const DetailReceiverAt = "receiver_at"

// DetailTraceID is the detail key of the trace id (32 hex digits) of
// the request or the attempt that made the decision, when the process
// that made it traces (docs/design.md, "Tracing"). The trace may not
// have been sampled.
const DetailTraceID = "trace_id"

// DetailSpanID is the detail key of the span id (16 hex digits) of the
// request's or the attempt's span that made the decision, beside
// DetailTraceID: the audit relay's publish spans link to it.
const DetailSpanID = "span_id"

// DetailSummary is the detail key of a REJECTED record that summarizes
// the rejections of one source and reason past their rate (the receiver
// records those one by one only up to it): an object with count,
// first_seen, last_seen and sample_request_ids.
const DetailSummary = "summary"

// Key is the record's key on the compacted audit topic, made only of what
// hookstream vouches for: source + "/" + event_id for a record about an
// event (the receiver sets event_id only once the signature is verified),
// else the server's request id (a request rejected before its event id
// was authenticated or read), else, for a decision about no event and no
// request (a customer drained with nothing left to run), the record's own
// audit id. Compaction therefore keeps the latest decision per event, no
// client can put a record under an event's key without its source's
// secret, nor two sources' equal ids share one, and every key is one
// retention can tombstone (never "", which every such record would share
// and nothing would ever remove).
func (r *AuditRecord) Key() string {
	switch {
	case r.EventID != "":
		return r.Source + "/" + r.EventID
	case r.RequestID != "":
		return r.RequestID
	}
	return r.AuditID
}

// Marshal encodes the record as JSON, byte for byte as encoding/json does.
func (r *AuditRecord) Marshal() ([]byte, error) {
	if b, ok := r.appendPlainJSON(make([]byte, 0, 512)); ok {
		return b, nil
	}
	return json.Marshal(r)
}

// appendPlainJSON encodes the common record by hand, a few times faster
// than a general encoder (the receiver encodes one for every request): a
// detail of strings only (such as a client's request id), a time
// encoding/json accepts, and strings of printable ASCII that JSON leaves as
// they are (ids, names, actions). Anything else reports false and goes to
// encoding/json. (sonic's encoding/json-compatible mode,
// used before, writes a backspace as \u0008 where encoding/json writes \b:
// FuzzAuditMarshal found it.) The field order and omissions are the struct
// tags'.
func (r *AuditRecord) appendPlainJSON(b []byte) ([]byte, bool) {
	if r.At.Year() < 0 || r.At.Year() > 9999 {
		return nil, false
	}
	var keys []string
	if len(r.Detail) > 0 {
		keys = make([]string, 0, len(r.Detail))
		for k, v := range r.Detail {
			if s, ok := v.(string); !ok || !plainJSON(k) || !plainJSON(s) {
				return nil, false
			}
			keys = append(keys, k)
		}
		slices.Sort(keys) // encoding/json's order
	}
	for _, s := range [...]string{r.AuditID, r.EventID, r.Source, r.CustomerID, r.EventType, string(r.Action),
		r.Reason, string(r.Actor), r.Instance, r.RequestID} {
		if !plainJSON(s) {
			return nil, false
		}
	}
	str := func(key, v string, omitEmpty bool) {
		if v == "" && omitEmpty {
			return
		}
		b = append(b, `,"`...)
		b = append(b, key...)
		b = append(b, `":"`...)
		b = append(b, v...)
		b = append(b, '"')
	}
	num := func(key string, v int64) {
		b = append(b, `,"`...)
		b = append(b, key...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, v, 10)
	}
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(r.SchemaVersion), 10)
	str("audit_id", r.AuditID, false)
	str("event_id", r.EventID, true)
	str("source", r.Source, true)
	str("customer_id", r.CustomerID, true)
	str("event_type", r.EventType, true)
	str("action", string(r.Action), false)
	str("reason", r.Reason, true)
	if r.HTTPStatus != 0 {
		num("http_status", int64(r.HTTPStatus))
	}
	if r.Attempt != 0 {
		num("attempt", int64(r.Attempt))
	}
	if r.Partition != nil {
		num("partition", int64(*r.Partition))
	}
	if r.Offset != nil {
		num("offset", *r.Offset)
	}
	str("actor", string(r.Actor), false)
	str("instance", r.Instance, false)
	str("request_id", r.RequestID, true)
	b = append(b, `,"at":"`...)
	b = r.At.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if len(keys) > 0 {
		b = append(b, `,"detail":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, k...)
			b = append(b, `":"`...)
			b = append(b, r.Detail[k].(string)...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// plainJSON reports whether JSON encodes s as it is, between quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

var schemaVersionHeader = []byte(strconv.Itoa(AuditSchemaVersion))

// KafkaRecord is r as a record of the audit topic: key Key(), value the
// JSON record, headers action and schema-version.
func (r *AuditRecord) KafkaRecord(topic string) (*kgo.Record, error) {
	v, err := r.Marshal()
	if err != nil {
		return nil, fmt.Errorf("audit record %s: %w", r.AuditID, err)
	}
	return &kgo.Record{
		Topic: topic,
		Key:   []byte(r.Key()),
		Value: v,
		Headers: []kgo.RecordHeader{
			{Key: HeaderAuditAction, Value: []byte(r.Action)},
			{Key: HeaderAuditActor, Value: []byte(r.Actor)},
			{Key: HeaderAuditSchemaVersion, Value: schemaVersionHeader},
		},
	}, nil
}

// ErrAuditHeader is wrapped by every error of AuditFromHeader.
var ErrAuditHeader = errors.New("wire: bad " + HeaderAudit + " header")

// AuditFromHeader decodes the receiver's decision that travels with an
// event in the header HeaderAudit: an ACCEPTED or RETRY_ACCEPTED record by
// the receiver, of this build's schema version, with a UUID audit_id (the
// table's type, in the form the receiver writes), the event's source and id, an instance and a time. It
// refuses anything else, wrapping ErrAuditHeader, so that a record the
// table would refuse is caught before a transaction tries to write it.
// Fields it does not know are ignored (a newer build of the same version
// may add optional ones).
//
// The record has no partition or offset (the receiver cannot know them
// before the broker acknowledges the event): the reader sets them from the
// record it read the header from, and should check that its event_id and
// source are the record's.
func AuditFromHeader(v []byte) (*AuditRecord, error) {
	var r AuditRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuditHeader, err)
	}
	var problem string
	switch {
	case r.SchemaVersion != AuditSchemaVersion:
		problem = fmt.Sprintf("schema_version %d, this build reads %d", r.SchemaVersion, AuditSchemaVersion)
	case r.Action != ActionAccepted && r.Action != ActionRetryAccepted:
		problem = fmt.Sprintf("action %q is not a receiver's decision to produce an event", r.Action)
	case r.Actor != ActorIngest:
		problem = fmt.Sprintf("actor %q, want %q", r.Actor, ActorIngest)
	case !canonicalUUID(r.AuditID):
		problem = fmt.Sprintf("audit_id %q is not a UUID in canonical form", r.AuditID)
	case r.EventID == "" || r.Source == "":
		problem = "event_id or source missing"
	case r.Instance == "":
		problem = "instance missing"
	case r.At.IsZero():
		problem = "at missing"
	default:
		return &r, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrAuditHeader, problem)
}

// canonicalUUID reports whether s is a UUID as uuid.UUID.String writes it:
// the only form every reader (and PostgreSQL, which also takes others,
// but not all that uuid.Parse does) sees as the same id.
func canonicalUUID(s string) bool {
	id, err := uuid.Parse(s)
	return err == nil && id.String() == s
}

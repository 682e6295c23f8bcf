package wire

import (
	"fmt"
	"strconv"
	"time"

	"github.com/bytedance/sonic"
	"github.com/twmb/franz-go/pkg/kgo"
)

// AuditSchemaVersion is the schema_version of the audit records this build
// writes (schemas/json/audit-record.schema.json).
const AuditSchemaVersion = 1

// Action is what an audit record says happened.
type Action string

// The audit actions of DESIGN.md.
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

// Key is the record's key on the compacted audit topic: the event id, or the
// request id for a request that never had one (a rejection before the id was
// known). Compaction therefore keeps the latest decision per event.
func (r *AuditRecord) Key() string {
	if r.EventID != "" {
		return r.EventID
	}
	return r.RequestID
}

// Marshal encodes the record as JSON.
func (r *AuditRecord) Marshal() ([]byte, error) {
	return stdJSON.Marshal(r)
}

// stdJSON encodes like encoding/json (HTML escaping, sorted map keys,
// strings validated), a few times faster: the receiver encodes an audit
// record for every request.
var stdJSON = sonic.ConfigStd

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

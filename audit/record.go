package audit

import (
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/wire"
)

// selectColumns are audit_log's columns in the order scanRecord reads them.
const selectColumns = `a.audit_id::text, a.schema_version, coalesce(a.event_id, ''), coalesce(a.source, ''),
coalesce(a.customer_id, ''), coalesce(a.event_type, ''), a.action, coalesce(a.reason, ''),
coalesce(a.http_status, 0), coalesce(a.attempt, 0), a.kafka_partition, a.kafka_offset, a.actor, a.instance,
coalesce(a.request_id, ''), a.at, a.detail`

func scanRecord(row pgx.Row, extra ...any) (*wire.AuditRecord, error) {
	var r wire.AuditRecord
	var action, actor string
	var detail []byte
	var at time.Time
	dest := append([]any{&r.AuditID, &r.SchemaVersion, &r.EventID, &r.Source, &r.CustomerID, &r.EventType, &action, &r.Reason,
		&r.HTTPStatus, &r.Attempt, &r.Partition, &r.Offset, &actor, &r.Instance, &r.RequestID, &at, &detail}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	r.Action, r.Actor, r.At = wire.Action(action), wire.Actor(actor), at.UTC()
	if len(detail) > 2 {
		if err := json.Unmarshal(detail, &r.Detail); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

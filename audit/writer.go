package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookstream/hookstream/internal/wire"
)

// Writer writes audit records into audit_log inside the caller's
// transaction, where the Relay finds them once it has committed.
type Writer struct{}

// Write inserts recs in tx, in order.
func (Writer) Write(ctx context.Context, tx pgx.Tx, recs ...*wire.AuditRecord) error {
	return insert(ctx, tx, true, recs)
}

// insertSQL inserts a set of records in one statement (arrays in, one row
// each), in the given order. With $18 set they are for the relay to
// publish (xid: the writing transaction's id); without it (the sink's
// copies of records already on the topic) they are not. A record already
// present (same audit_id) is skipped.
const insertSQL = `INSERT INTO audit_log (audit_id, schema_version, event_id, source, customer_id, event_type, action, reason,
                       http_status, attempt, kafka_partition, kafka_offset, actor, instance, request_id, at, detail, xid)
SELECT r.audit_id, r.schema_version, NULLIF(r.event_id, ''), NULLIF(r.source, ''), NULLIF(r.customer_id, ''),
       NULLIF(r.event_type, ''), r.action, NULLIF(r.reason, ''), NULLIF(r.http_status, 0), NULLIF(r.attempt, 0),
       r.kafka_partition, r.kafka_offset, r.actor, r.instance, NULLIF(r.request_id, ''), r.at, r.detail,
       CASE WHEN $18 THEN pg_current_xact_id() END
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::int[], $10::int[], $11::int[], $12::bigint[], $13::text[], $14::text[], $15::text[],
            $16::timestamptz[], $17::jsonb[])
     WITH ORDINALITY AS r(audit_id, schema_version, event_id, source, customer_id, event_type, action, reason,
                          http_status, attempt, kafka_partition, kafka_offset, actor, instance, request_id, at, detail, n)
ORDER BY r.n
ON CONFLICT (audit_id) DO NOTHING`

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insert(ctx context.Context, db execer, publish bool, recs []*wire.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	n := len(recs)
	var (
		ids, eventIDs, srcs, customers, types, actions, reasons = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actors, instances, requestIDs                           = make([]string, n), make([]string, n), make([]string, n)
		versions, statuses, attempts                            = make([]int32, n), make([]int32, n), make([]int32, n)
		partitions                                              = make([]*int32, n)
		offsets                                                 = make([]*int64, n)
		ats                                                     = make([]time.Time, n)
		details                                                 = make([][]byte, n)
	)
	for i, r := range recs {
		detail := []byte("{}")
		if len(r.Detail) > 0 {
			var err error
			if detail, err = json.Marshal(r.Detail); err != nil {
				return fmt.Errorf("audit: detail of %s: %w", r.AuditID, err)
			}
		}
		ids[i], eventIDs[i], srcs[i], customers[i], types[i] = r.AuditID, r.EventID, r.Source, r.CustomerID, r.EventType
		actions[i], reasons[i], actors[i], instances[i], requestIDs[i] = string(r.Action), r.Reason, string(r.Actor), r.Instance, r.RequestID
		versions[i], statuses[i], attempts[i] = int32(r.SchemaVersion), int32(r.HTTPStatus), int32(r.Attempt)
		partitions[i], offsets[i], ats[i], details[i] = r.Partition, r.Offset, r.At, detail
	}
	_, err := db.Exec(ctx, insertSQL, ids, versions, eventIDs, srcs, customers, types, actions, reasons,
		statuses, attempts, partitions, offsets, actors, instances, requestIDs, ats, details, publish)
	if err != nil {
		return fmt.Errorf("audit: insert: %w", err)
	}
	return nil
}

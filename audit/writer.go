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

// Write inserts recs in tx, in order, with COPY (cheaper than an INSERT
// for both sides at the consumer's rate; the records are new, so there is
// no conflict to handle). The rows get the writing transaction's id
// (xid's default), which makes them the relay's to publish.
func (Writer) Write(ctx context.Context, tx pgx.Tx, recs ...*wire.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	rows := make([][]any, len(recs))
	for i, r := range recs {
		detail, err := detailOf(r)
		if err != nil {
			return err
		}
		rows[i] = []any{r.AuditID, int32(r.SchemaVersion), nullString(r.EventID), nullString(r.Source), nullString(r.CustomerID),
			nullString(r.EventType), string(r.Action), nullString(r.Reason), nullInt(r.HTTPStatus), nullInt(r.Attempt),
			r.Partition, r.Offset, string(r.Actor), r.Instance, nullString(r.RequestID), storedAt(r.At), detail}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_log"}, copyColumns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("audit: insert: %w", err)
	}
	return nil
}

var copyColumns = []string{"audit_id", "schema_version", "event_id", "source", "customer_id", "event_type", "action", "reason",
	"http_status", "attempt", "kafka_partition", "kafka_offset", "actor", "instance", "request_id", "at", "detail"}

// storedAt is at as audit_log stores it: timestamptz holds microseconds,
// and at is part of the key (audit_id, at) of the partitioned table
// (migration 10), so every copy of a record (the receiver's nanoseconds
// on the topic and in the event record, the relay's microseconds read
// back from the table) must become the same value whichever way it is
// sent: truncated here, as pgx's binary encoding does, rather than
// rounded, as the server does a text value.
func storedAt(at time.Time) time.Time { return at.Truncate(time.Microsecond) }

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullInt(n int) *int32 {
	if n == 0 {
		return nil
	}
	v := int32(n)
	return &v
}

func detailOf(r *wire.AuditRecord) ([]byte, error) {
	if len(r.Detail) == 0 {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(r.Detail)
	if err != nil {
		return nil, fmt.Errorf("audit: detail of %s: %w", r.AuditID, err)
	}
	return b, nil
}

// WriteIfAbsent inserts recs in tx, in order, skipping any whose audit_id
// is already in the table. It is for records that may be written more
// than once: the receiver's decision that travels in the event record
// (wire.HeaderAudit) is written by every transaction that processes a
// delivery of that record, and the first to commit wins. The rows get
// the writing transaction's id like Write's, so the relay publishes them;
// a skipped row is not published again.
func (Writer) WriteIfAbsent(ctx context.Context, tx pgx.Tx, recs ...*wire.AuditRecord) error {
	return insert(ctx, tx, insertRelayedSQL, recs)
}

// insertColumns are the columns both insert statements fill from arrays,
// one row per element, in the given order. Every value goes in as text or
// bigint and is converted by the server, so a value the table refuses (an
// audit_id that is not a UUID, a number out of range) is the server's
// error (a *pgconn.PgError with its SQLSTATE), never the client's.
const insertColumns = `audit_id, schema_version, event_id, source, customer_id, event_type, action, reason,
                       http_status, attempt, kafka_partition, kafka_offset, actor, instance, request_id, at, detail`

const insertValues = `SELECT r.audit_id::uuid, r.schema_version::int, NULLIF(r.event_id, ''), NULLIF(r.source, ''), NULLIF(r.customer_id, ''),
       NULLIF(r.event_type, ''), r.action, NULLIF(r.reason, ''), NULLIF(r.http_status, 0)::int, NULLIF(r.attempt, 0)::int,
       r.kafka_partition::int, r.kafka_offset, r.actor, r.instance, NULLIF(r.request_id, ''), r.at, r.detail`

const insertFrom = `
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::text[],
            $16::timestamptz[], $17::jsonb[])
     WITH ORDINALITY AS r(audit_id, schema_version, event_id, source, customer_id, event_type, action, reason,
                          http_status, attempt, kafka_partition, kafka_offset, actor, instance, request_id, at, detail, n)
ORDER BY r.n
ON CONFLICT (audit_id, at) DO NOTHING`

// insertCopiedSQL is the sink's: copies of records already on the topic,
// so not the relay's to publish (no xid).
const insertCopiedSQL = `INSERT INTO audit_log (` + insertColumns + `, xid)
` + insertValues + `, NULL` + insertFrom

// insertRelayedSQL leaves xid to its default, the writing transaction's.
const insertRelayedSQL = `INSERT INTO audit_log (` + insertColumns + `)
` + insertValues + insertFrom

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insert(ctx context.Context, db execer, sql string, recs []*wire.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	n := len(recs)
	var (
		ids, eventIDs, srcs, customers, types, actions, reasons = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actors, instances, requestIDs                           = make([]string, n), make([]string, n), make([]string, n)
		versions, statuses, attempts                            = make([]int64, n), make([]int64, n), make([]int64, n)
		partitions, offsets                                     = make([]*int64, n), make([]*int64, n)
		ats                                                     = make([]time.Time, n)
		details                                                 = make([][]byte, n)
	)
	for i, r := range recs {
		detail, err := detailOf(r)
		if err != nil {
			return err
		}
		ids[i], eventIDs[i], srcs[i], customers[i], types[i] = r.AuditID, r.EventID, r.Source, r.CustomerID, r.EventType
		actions[i], reasons[i], actors[i], instances[i], requestIDs[i] = string(r.Action), r.Reason, string(r.Actor), r.Instance, r.RequestID
		versions[i], statuses[i], attempts[i] = int64(r.SchemaVersion), int64(r.HTTPStatus), int64(r.Attempt)
		if r.Partition != nil {
			p := int64(*r.Partition)
			partitions[i] = &p
		}
		offsets[i], ats[i], details[i] = r.Offset, storedAt(r.At), detail
	}
	_, err := db.Exec(ctx, sql, ids, versions, eventIDs, srcs, customers, types, actions, reasons,
		statuses, attempts, partitions, offsets, actors, instances, requestIDs, ats, details)
	if err != nil {
		return fmt.Errorf("audit: insert: %w", err)
	}
	return nil
}

package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/wire"
)

// Writer writes audit records into audit_log inside the caller's
// transaction, and queues them for the Relay.
type Writer struct{}

// Write inserts recs in tx, in order, and adds them to the outbox.
func (Writer) Write(ctx context.Context, tx pgx.Tx, recs ...*wire.AuditRecord) error {
	return insert(ctx, tx, true, recs)
}

// insertSQL inserts one record; the outbox row, when wanted, is added in
// the same statement so that the two cannot diverge.
const insertSQL = `WITH a AS (
  INSERT INTO audit_log (audit_id, schema_version, event_id, source, customer_id, event_type, action, reason,
                         http_status, attempt, kafka_partition, kafka_offset, actor, instance, request_id, at, detail)
  VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), $7, NULLIF($8, ''),
          NULLIF($9, 0), NULLIF($10, 0), $11, $12, $13, $14, NULLIF($15, ''), $16, $17)
  ON CONFLICT (audit_id) DO NOTHING
  RETURNING seq
)
INSERT INTO audit_outbox (seq) SELECT seq FROM a WHERE $18`

type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

func insert(ctx context.Context, db batcher, outbox bool, recs []*wire.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, r := range recs {
		detail := []byte("{}")
		if len(r.Detail) > 0 {
			var err error
			if detail, err = json.Marshal(r.Detail); err != nil {
				return fmt.Errorf("audit: detail of %s: %w", r.AuditID, err)
			}
		}
		b.Queue(insertSQL, r.AuditID, r.SchemaVersion, r.EventID, r.Source, r.CustomerID, r.EventType, string(r.Action), r.Reason,
			r.HTTPStatus, r.Attempt, r.Partition, r.Offset, string(r.Actor), r.Instance, r.RequestID, r.At, detail, outbox)
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("audit: insert: %w", err)
	}
	return nil
}

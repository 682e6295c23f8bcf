package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestDrainedRecordHasATopicKey: every audit record has a key on the
// compacted audit topic (wire.AuditRecord.Key), and retention tombstones
// that key once its rows leave audit_log (docs/design.md, "Tombstones").
// The UNPARKED "drained" record of a customer that drains with nothing
// left (here: its dead blocker skipped, nothing waiting behind it) names
// no event and no request. Its key was "", shared by every such record
// (compaction kept the last one only) and never tombstoned (the
// request-id pass skipped it, and audit.Tombstones refuses an empty key);
// now it is the record's own audit id.
func TestDrainedRecordHasATopicKey(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	h := consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		return consumer.Permanent(errors.New("410 gone"))
	})
	tb.produce("generic", "k-0", "cus_k", 0)
	tb.flush()
	tb.member(consumer.Config{Handler: h, Retry: policy1()})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM customer_blocks WHERE customer_id = 'cus_k' AND state = 'PARKED'`)
	cfg := consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}}
	if err := consumer.Unpark(context.Background(), cfg, "cus_k", consumer.UnparkOptions{SkipBlocker: true, Reason: "skip"}); err != nil {
		t.Fatal(err)
	}
	tb.waitFor(time.Minute, 0, `SELECT count(*) FROM customer_blocks`)
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM audit_log WHERE action = 'UNPARKED' AND customer_id = 'cus_k' AND reason = 'drained'`)
	var r wire.AuditRecord
	if err := tb.pool.QueryRow(context.Background(), `SELECT audit_id::text, coalesce(source, ''), coalesce(event_id, ''), coalesce(request_id, '')
FROM audit_log WHERE action = 'UNPARKED' AND customer_id = 'cus_k' AND reason = 'drained'`).Scan(&r.AuditID, &r.Source, &r.EventID, &r.RequestID); err != nil {
		t.Fatal(err)
	}
	if r.Key() == "" || r.Key() != r.AuditID {
		t.Errorf("the drained record %+v has the key %q, want its audit id", r, r.Key())
	}
}

package audit_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/audit/audittest"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestWriteIfAbsent: the same record written by two transactions (a
// redelivered event record carrying the receiver's decision) is stored
// once, with the xid of the transaction that committed it first, and
// published once; the second transaction waits for the first rather than
// fail, and its other records are written.
func TestWriteIfAbsent(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	accepted := record("e", wire.ActionAccepted)
	accepted.Actor = wire.ActorIngest
	processed := record("e", wire.ActionProcessed)

	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx) //nolint:errcheck // no-op once committed
	if err := (audit.Writer{}).WriteIfAbsent(ctx, first, accepted); err != nil {
		t.Fatal(err)
	}
	firstXid := xidOf(t, first)
	var secondPID int
	second, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback(ctx) //nolint:errcheck // no-op once committed
	if err := second.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&secondPID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := (audit.Writer{}).WriteIfAbsent(ctx, second, accepted, processed)
		if err == nil {
			err = second.Commit(ctx)
		}
		done <- err
	}()
	waitForLock(t, pool, secondPID) // on the first's audit_id
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// And once more, after both committed: nothing new.
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return (audit.Writer{}).WriteIfAbsent(ctx, tx, accepted, processed)
	}); err != nil {
		t.Fatal(err)
	}

	rows, err := pool.Query(ctx, `SELECT audit_id::text, xid::text FROM audit_log ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ ID, Xid string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != accepted.AuditID || got[1].ID != processed.AuditID {
		t.Fatalf("audit_log holds %v, want the two records once each", got)
	}
	if got[0].Xid != strconv.FormatUint(firstXid, 10) {
		t.Fatalf("ACCEPTED row has xid %s, want the first writer's %d", got[0].Xid, firstXid)
	}
	if n := audittest.Drain(t, newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit}), pool); n != 2 {
		t.Fatalf("relay published %d rows, want 2", n)
	}
	topicHolds(t, brokers, tp.Audit, []string{accepted.AuditID, processed.AuditID})
}

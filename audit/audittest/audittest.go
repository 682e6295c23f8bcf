// Package audittest drives the audit relay in tests.
package audittest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/audit"
)

// DB is what Drain reads the relay's progress with (a pool, a connection).
type DB interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// Drain runs relay until it has published every audit row committed
// before the call, or fails the test after 30 seconds, and returns how
// many rows the relay published while it ran. The relay reads in commit
// order with no snapshot horizon, so "everything committed" is a fixed
// target: the last commit's last row.
func Drain(t testing.TB, relay *audit.Relay, db DB) int {
	t.Helper()
	ctx := t.Context()
	var from, target struct{ commit, seq int64 }
	if err := db.QueryRow(ctx, `SELECT commit_seq, seq FROM audit_relay`).Scan(&from.commit, &from.seq); err != nil {
		t.Fatal(err)
	}
	err := db.QueryRow(ctx, `SELECT c.commit_seq, max(a.seq) FROM audit_commits c JOIN audit_log a ON a.xid = c.xid
WHERE c.commit_seq = (SELECT max(commit_seq) FROM audit_commits) GROUP BY c.commit_seq`).Scan(&target.commit, &target.seq)
	if err == pgx.ErrNoRows {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(rctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var at bool
		if err := db.QueryRow(ctx, `SELECT (commit_seq, seq) >= ($1, $2) FROM audit_relay`, target.commit, target.seq).Scan(&at); err != nil {
			stop()
			t.Fatal(err)
		}
		if at {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("the relay did not publish up to commit %d row %d in 30s", target.commit, target.seq)
		}
		time.Sleep(5 * time.Millisecond) // polling the stored position
	}
	stop()
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM audit_relay r, audit_commits c JOIN audit_log a ON a.xid = c.xid
WHERE (c.commit_seq, a.seq) > ($1, $2) AND (c.commit_seq, a.seq) <= (r.commit_seq, r.seq)`, from.commit, from.seq).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

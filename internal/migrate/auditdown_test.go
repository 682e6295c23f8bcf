package migrate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/migrate"
)

// TestAuditLogDownKeepsAConcurrentWrite: migration 10's down copied the
// rows and then dropped the partitioned table without locking it first: a
// writer whose transaction committed after the copy's snapshot (the DROP
// waiting for it) lost its row. Now the down waits for the writer first.
func TestAuditLogDownKeepsAConcurrentWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 11)
	if _, err := conn.Exec(ctx, `INSERT INTO audit_log (audit_id, action, actor, instance, at) VALUES ($1, 'PROCESSED', 'consumer', 'x', now())`, uuid.New()); err != nil {
		t.Fatal(err)
	}
	w, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(ctx) }()
	tx, err := w.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	late := uuid.New()
	if _, err := tx.Exec(ctx, `INSERT INTO audit_log (audit_id, action, actor, instance, at) VALUES ($1, 'PROCESSED', 'consumer', 'late', now())`, late); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := migrate.DownTo(ctx, dbURL, 9); done <- err }()
	// wait until the down migration waits for the writer's lock
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("down migration never waited for a lock")
		}
		time.Sleep(20 * time.Millisecond) // polling pg_stat_activity: nothing to wait on
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var n, all int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE audit_id = $1), count(*) FROM audit_log`, late).Scan(&n, &all); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("after down: the row committed during the down migration is gone (%d rows left)", all)
	}
}

// TestAuditLogDownWithARedatedDuplicate: the partitioned table lets one
// audit_id have two times (the consumer's redated decision delivered
// again, docs/design.md); migration 10's down failed to make audit_id the
// key again. It keeps the first row written.
func TestAuditLogDownWithARedatedDuplicate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 11)
	id := uuid.New()
	for i, at := range []string{"now()", "now() - interval '1 minute'"} {
		if _, err := conn.Exec(ctx, `INSERT INTO audit_log (audit_id, action, actor, instance, at) VALUES ($1, 'ACCEPTED', 'ingest', $2, `+at+`)`, id, fmt.Sprint("copy-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := migrate.DownTo(ctx, dbURL, 9); err != nil {
		t.Fatalf("down from a table where one audit_id has two rows: %v", err)
	}
	var instance string
	if err := conn.QueryRow(ctx, `SELECT string_agg(instance, ',') FROM audit_log WHERE audit_id = $1`, id).Scan(&instance); err != nil || instance != "copy-0" {
		t.Errorf("after down: rows of the audit_id from %q (%v), want the first written only", instance, err)
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/testenv"
)

// maintain runs a round on the database and says what it did; a retention
// given in days is read as days. A round changes nothing on a database
// whose bucket is younger than its period.
func TestMaintainRunsARound(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"maintain", "--database-url", dbURL, "--events-retention", "3d", "--audit-retention", "90d"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := stdout.String(); got != "events bucket 0 is current\n" {
		t.Errorf("stdout %q", got)
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var parts string
	if err := conn.QueryRow(context.Background(), `SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass`).Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts != "events_b0" {
		t.Errorf("partitions %s, want events_b0", parts)
	}
}

// TestMaintainSaysWhatItDidBeforeItFailed: a round that fails at the
// audit_log step (a partition due, no brokers for its tombstones) has
// already opened and dropped events buckets, which cannot be undone;
// maintain prints them all the same, so the operator reading the cron
// job's output learns what changed, not only the error.
func TestMaintainSaysWhatItDidBeforeItFailed(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	// Bucket 0 is older than its period; audit_log_p0 (empty) is made to
	// end in 2020, long past the audit retention, and a partition takes
	// the time from there to where the migration's own begin.
	for _, q := range []string{
		`UPDATE event_buckets SET opened_at = now() - interval '30 days' WHERE bucket = 0`,
		`DO $$
DECLARE t0 text := substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)') FROM pg_class c WHERE c.relname = 'audit_log_p0';
BEGIN
  ALTER TABLE audit_log DETACH PARTITION audit_log_p0;
  ALTER TABLE audit_log ATTACH PARTITION audit_log_p0 FOR VALUES FROM (MINVALUE) TO ('2020-01-01');
  EXECUTE format('CREATE TABLE audit_log_gap PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)', '2020-01-01', t0);
END $$`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"maintain", "--database-url", dbURL}, &stdout, &stderr); code == 0 {
		t.Fatalf("exit 0 with an audit_log partition due and no brokers: %s", stdout.String())
	}
	var cur int
	if err := conn.QueryRow(ctx, `SELECT bucket FROM event_clock`).Scan(&cur); err != nil || cur != 1 {
		t.Fatalf("current bucket %d (%v), want 1: the round opened it before it failed", cur, err)
	}
	if got := stdout.String(); !strings.Contains(got, "opened events bucket 1\n") {
		t.Errorf("stdout %q, stderr %q: want it to say that events bucket 1 was opened", got, stderr.String())
	}
}

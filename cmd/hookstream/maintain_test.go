package main

import (
	"bytes"
	"context"
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

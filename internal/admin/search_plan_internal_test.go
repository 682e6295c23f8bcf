package admin

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/internal/testenv"
)

// TestListingReadsAboutAPage: on 80,000 events in two partitions, a page
// of GET /admin/events reads a few hundred buffers at most (the statement
// it runs, under EXPLAIN (ANALYZE, BUFFERS)) for every listing that
// docs/design.md says stays bounded (about 50 to 120); the one generic
// statement it replaces read over 1,000 without a status (it sorted or
// scanned the table).
func TestListingReadsAboutAPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.PostgresPool(t)
	for _, q := range []string{`CREATE TABLE events_b1 PARTITION OF events FOR VALUES IN (1)`,
		`INSERT INTO events (source, event_id, customer_id, event_type, status, updated_at, bucket)
SELECT 'src_' || (i % 3), 'evt_' || i, 'cus_' || (i % 1000), 'type',
  CASE WHEN i % 100 < 4 THEN (ARRAY['PROCESSING', 'FAILED', 'DEAD', 'PARKED'])[1 + i % 100] ELSE 'PROCESSED' END,
  timestamptz '2026-11-01T00:00:00Z' + i * interval '1 minute', i % 2
FROM generate_series(1, 80000) AS i`, `ANALYZE events`} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	mid := time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)
	day := mid.Add(24 * time.Hour)
	after := &cursor{UpdatedAt: mid, Source: "src_1", EventID: "evt_1"}
	for name, f := range map[string]*eventFilter{
		"no filter": {}, "status": {status: "DEAD"}, "since and until": {since: &mid, until: &day},
		"cursor": {after: after}, "status and cursor": {status: "PARKED", after: after},
		"event_id": {eventID: "evt_77"}, "customer": {customerID: "cus_7"},
	} {
		f.limit = 100
		n := bufferCount(t, pool, f)
		t.Logf("%s: %d buffers", name, n)
		if n > 300 {
			t.Errorf("%s: %d buffers for a page of 100", name, n)
		}
	}
}

// bufferCount is the shared buffers f's listing reads, as EXPLAIN counts them.
func bufferCount(t *testing.T, pool *pgxpool.Pool, f *eventFilter) int {
	t.Helper()
	sql, args := f.query()
	var out []struct {
		Plan struct {
			Hit  int `json:"Shared Hit Blocks"`
			Read int `json:"Shared Read Blocks"`
		}
	}
	var raw []byte
	err := pool.QueryRow(context.Background(), `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sql,
		append([]any{pgx.QueryExecModeExec}, args...)...).Scan(&raw)
	if err != nil || json.Unmarshal(raw, &out) != nil || len(out) != 1 {
		t.Fatalf("%s: %v %s", sql, err, raw)
	}
	return out[0].Plan.Hit + out[0].Plan.Read
}

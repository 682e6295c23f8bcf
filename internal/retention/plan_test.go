package retention

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/testenv"
)

// TestNoLaterRowReadsEachLaterPartitionOnce: the "no later row" test of a
// page reads each later partition once over the page's range, in the
// custom plan and in the generic one a prepared statement comes to, never
// once per key of the page (the look-up per key it replaces).
func TestNoLaterRowReadsEachLaterPartitionOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	parts, err := job{conn: conn}.auditPartitions(ctx)
	if err != nil || len(parts) < 3 {
		t.Fatalf("partitions %v (%v), want audit_log_p0 and two after it", parts, err)
	}
	later := []string{parts[1].name, parts[2].name}
	for i, p := range parts[:3] {
		at := p.hi.Add(-time.Hour)
		if _, err := conn.Exec(ctx, `INSERT INTO audit_log (audit_id, source, event_id, action, actor, instance, at, xid)
SELECT gen_random_uuid(), 's' || (n % 3), 'e' || (n * $1::int), 'ACCEPTED', 'ingest', 'test', $2, NULL FROM generate_series(1, 30000) n`, i+1, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `ANALYZE audit_log`); err != nil {
		t.Fatal(err)
	}
	q := noLaterRowSQL(pgx.Identifier{parts[0].name}.Sanitize(), later)
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		var plan []struct{ Plan planNode }
		if err := conn.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+q, "s1", "e", 100).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		scans := map[string]int{}
		plan[0].Plan.walk(func(n planNode) {
			for _, l := range later {
				if n.Relation == l {
					scans[l]++
					if n.Loops > 1 {
						t.Errorf("%s: %s is read %v times, once per key: %s", mode, l, n.Loops, n.Type)
					}
				}
			}
		})
		for _, l := range later {
			if scans[l] == 0 {
				t.Errorf("%s: %s is not read", mode, l)
			}
		}
	}
}

type planNode struct {
	Type     string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Loops    float64    `json:"Actual Loops"`
	Plans    []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

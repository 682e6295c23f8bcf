package retention

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// perKeySQL is the "no later row" test noLaterRowSQL replaced: each key of
// the page looked up in every later partition by its index.
const perKeySQL = `SELECT k.source, k.event_id,
       EXISTS (SELECT 1 FROM audit_log l WHERE l.source = k.source AND l.event_id = k.event_id AND l.at >= $4)
FROM (SELECT DISTINCT source, event_id FROM %s
      WHERE (source, event_id) > ($1, $2) AND source IS NOT NULL AND event_id IS NOT NULL
      ORDER BY source, event_id LIMIT $3) k
ORDER BY k.source, k.event_id`

// TestNoLaterRowSpeed times the event keys' "no later row" test of the
// oldest audit_log partition, a page of DefaultTombstoneBatch keys at a
// time, by the per-key look-up and by noLaterRowSQL, on the database at
// $HOOKSTREAM_TOMBSTONE_SPEED_URL (filled by testdata/tombstone-speed.sql:
// docs/design.md, "A round's budget"), and checks that both find the same
// keys. Nothing is written. Skipped without the variable.
func TestNoLaterRowSpeed(t *testing.T) {
	url := os.Getenv("HOOKSTREAM_TOMBSTONE_SPEED_URL")
	if url == "" {
		t.Skip("HOOKSTREAM_TOMBSTONE_SPEED_URL is not set")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	parts, err := job{conn: conn}.auditPartitions(ctx)
	if err != nil || len(parts) < 2 {
		t.Fatalf("partitions %v (%v): want two at least", parts, err)
	}
	p, name := parts[0], pgx.Identifier{parts[0].name}.Sanitize()
	var later []string
	for _, q := range parts[1:] {
		later = append(later, q.name)
	}
	var old, set pass
	q := noLaterRowSQL(name, later)
	for {
		// A page each, one after the other: both see the same load.
		oldMore, setMore := old.perKeyPage(t, conn, name, p.hi), set.setBasedPage(t, conn, q)
		if oldMore != setMore || old.keys != set.keys || !slices.Equal(old.gone, set.gone) {
			t.Fatalf("after %d keys: per key %d without a later row, set-based %d", old.keys, len(old.gone), len(set.gone))
		}
		if !oldMore {
			break
		}
	}
	t.Logf("%d keys of %s, %d without a later row, %d later partitions: per key %.0f keys/s (%s), set-based %.0f keys/s (%s)",
		old.keys, p.name, len(old.gone), len(later),
		float64(old.keys)/old.took.Seconds(), old.took.Round(time.Millisecond),
		float64(set.keys)/set.took.Seconds(), set.took.Round(time.Millisecond))
	// The buffers (index and heap pages) one page of keys reads, from the
	// middle of the partition.
	var src, id string
	if err := conn.QueryRow(ctx, `SELECT source, event_id FROM `+name+` WHERE source IS NOT NULL AND event_id IS NOT NULL
ORDER BY source, event_id OFFSET (SELECT count(*) / 2 FROM `+name+`) LIMIT 1`).Scan(&src, &id); err != nil {
		t.Fatal(err)
	}
	t.Logf("a page from %s/%s reads %.1f buffers a key per key, %.1f set-based", src, id,
		float64(buffers(t, conn, fmt.Sprintf(perKeySQL, name), src, id, DefaultTombstoneBatch, p.hi))/DefaultTombstoneBatch,
		float64(buffers(t, conn, q, src, id, DefaultTombstoneBatch))/DefaultTombstoneBatch)
}

// buffers is how many shared buffers q reads, found or not.
func buffers(t *testing.T, conn *pgx.Conn, q string, args ...any) int {
	t.Helper()
	var plan []struct {
		Plan struct {
			Hit  int `json:"Shared Hit Blocks"`
			Read int `json:"Shared Read Blocks"`
		}
	}
	if err := conn.QueryRow(context.Background(), `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+q, args...).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	return plan[0].Plan.Hit + plan[0].Plan.Read
}

// pass is where a pass over the event keys stands, what it found and how
// long its queries took.
type pass struct {
	src, id string
	keys    int
	gone    []string
	took    time.Duration
}

// perKeyPage reads the next page by perKeySQL, and reports whether there
// are more.
func (o *pass) perKeyPage(t *testing.T, conn *pgx.Conn, name string, hi time.Time) bool {
	t.Helper()
	begin := time.Now()
	defer func() { o.took += time.Since(begin) }()
	rows, err := conn.Query(context.Background(), fmt.Sprintf(perKeySQL, name), o.src, o.id, DefaultTombstoneBatch, hi)
	if err != nil {
		t.Fatal(err)
	}
	var later bool
	n := 0
	if _, err := pgx.ForEachRow(rows, []any{&o.src, &o.id, &later}, func() error {
		if n++; !later {
			o.gone = append(o.gone, o.src+"/"+o.id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	o.keys += n
	return n == DefaultTombstoneBatch
}

// setBasedPage reads the next page by q (noLaterRowSQL), and reports
// whether there are more.
func (o *pass) setBasedPage(t *testing.T, conn *pgx.Conn, q string) bool {
	t.Helper()
	begin := time.Now()
	defer func() { o.took += time.Since(begin) }()
	pg, err := readPage(context.Background(), conn, q, o.src, o.id, DefaultTombstoneBatch)
	if err != nil {
		t.Fatal(err)
	}
	o.src, o.id, o.gone, o.keys = pg.src, pg.id, append(o.gone, pg.gone...), o.keys+pg.n
	return pg.n == DefaultTombstoneBatch
}

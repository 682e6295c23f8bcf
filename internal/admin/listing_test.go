package admin_test

import (
	"encoding/json"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/admin"
)

// plainListSQL is GET /admin/events as one statement: every filter, the
// listing's order, no page. The API's pages must add up to exactly it.
const plainListSQL = `SELECT source || '/' || event_id FROM events
WHERE ($1 = '' OR customer_id = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR source = $3)
  AND ($4 = '' OR event_id = $4) AND ($5 = '' OR event_type = $5)
  AND ($6::timestamptz IS NULL OR updated_at >= $6) AND ($7::timestamptz IS NULL OR updated_at < $7)
ORDER BY updated_at DESC, source DESC, event_id DESC`

// TestListingPagesMatchThePlainOrder: for every combination of the
// filters, over events of every status in two partitions with many equal
// updated_at, the pages of GET /admin/events (followed by their cursors)
// are exactly the rows of the plain ORDER BY query, in its order, each
// page full but the last, and only the last without a next_cursor.
func TestListingPagesMatchThePlainOrder(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`CREATE TABLE events_b1 PARTITION OF events FOR VALUES IN (1)`)
	// Each event id in both sources; 11 distinct times; buckets 0 and 1.
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, updated_at, bucket)
SELECT (ARRAY['stripe', 'github'])[1 + i % 2], 'evt_' || (i / 2), 'cus_' || (i % 3), (ARRAY['a', 'b'])[1 + i % 5 % 2],
  (ARRAY['PROCESSING', 'PROCESSED', 'FAILED', 'DEAD', 'PARKED'])[1 + i % 7 % 5],
  timestamptz '2026-11-30T10:00:00Z' + (i % 11) * interval '1 minute', i % 4 / 2
FROM generate_series(0, 399) AS i`)
	filters := []struct{ name, value string }{{"customer_id", "cus_1"}, {"status", "DEAD"}, {"source", "github"},
		{"event_id", "evt_7"}, {"event_type", "b"}, {"since", "2026-11-30T10:03:00Z"}, {"until", "2026-11-30T10:08:00Z"}}
	for q, args := range filterSets(filters) {
		want := tb.plainList(args)
		for _, limit := range []int{4, 7} {
			if got := tb.pages(q, limit); !slices.Equal(got, want) {
				t.Errorf("?%s&limit=%d:\n got %v\nwant %v", q.Encode(), limit, got, want)
			}
		}
	}
}

// filterSets yields every combination of filters: the query that sets
// them, and the arguments of a plain statement that names them all in
// their order, "" for a filter not set (NULL for since and until).
func filterSets(filters []struct{ name, value string }) iter.Seq2[url.Values, []any] {
	return func(yield func(url.Values, []any) bool) {
		for set := range 1 << len(filters) {
			q := url.Values{}
			args := make([]any, len(filters))
			for i, f := range filters {
				args[i] = ""
				if set&(1<<i) != 0 {
					q.Set(f.name, f.value)
					args[i] = f.value
				} else if f.name == "since" || f.name == "until" {
					args[i] = nil
				}
			}
			if !yield(q, args) {
				return
			}
		}
	}
}

func (tb *testBundle) plainList(args []any) []string {
	tb.t.Helper()
	return tb.column(plainListSQL, args...)
}

// pages follows the listing of q page by page, limit at a time, checking
// that every page but the last is full and has a next_cursor.
func (tb *testBundle) pages(q url.Values, limit int) []string {
	tb.t.Helper()
	q.Set("limit", strconv.Itoa(limit))
	defer q.Del("limit")
	defer q.Del("cursor")
	var all []string
	for range 500 {
		rec := tb.do("GET", "/admin/events?"+q.Encode(), "192.0.2.32:1", "Bearer "+token)
		var page struct {
			Events []struct {
				Source    string    `json:"source"`
				EventID   string    `json:"event_id"`
				UpdatedAt time.Time `json:"updated_at"`
			} `json:"events"`
			NextCursor string `json:"next_cursor"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
			tb.t.Fatalf("?%s: %d %s", q.Encode(), rec.Code, rec.Body)
		}
		for _, e := range page.Events {
			all = append(all, e.Source+"/"+e.EventID)
		}
		if page.NextCursor == "" {
			return all
		}
		if len(page.Events) != limit {
			tb.t.Errorf("?%s: %d events and a next_cursor", q.Encode(), len(page.Events))
		}
		q.Set("cursor", page.NextCursor)
	}
	tb.t.Fatalf("?%s: more than 500 pages", q.Encode())
	return nil
}

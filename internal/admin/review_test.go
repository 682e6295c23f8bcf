package admin_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/admin"
)

// TestSearchCursorHoldingNULIs400: a cursor is the client's text too. One
// that decodes to a position holding NUL (JSON's \u0000, which the
// storable-parameter check cannot see in the base64) is 400 bad_request,
// as a NUL in any other parameter is (docs/design.md: "a path or query
// parameter holding NUL or invalid UTF-8 is 400 bad_request ... it was a
// 503 naming the driver's error"), never a 503 "database unavailable".
func TestSearchCursorHoldingNULIs400(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, updated_at) VALUES
  ('generic', 'e1', 'c', 'DEAD', '2026-11-30T10:00:00Z')`)
	for _, raw := range []string{
		`{"u":"2026-11-30T10:00:00Z","s":"gen\u0000eric","e":"e1"}`,
		`{"u":"2026-11-30T10:00:00Z","s":"generic","e":"e\u00001"}`,
	} {
		for _, q := range []string{"", "status=DEAD&", "event_id=e1&", "customer_id=c&"} {
			target := "/admin/events?" + q + "cursor=" + base64.RawURLEncoding.EncodeToString([]byte(raw))
			if rec := tb.get(target); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"bad_request"`) {
				t.Errorf("%s (cursor %s): %d %s, want 400 bad_request", target, raw, rec.Code, rec.Body)
			}
		}
	}
}

// plainReplaySQL is the bulk replay's selection as one generic statement:
// every filter, the replay's order. Preview and replay must select exactly
// its first limit rows and count all of them.
const plainReplaySQL = `SELECT event_id FROM events
WHERE status IN ('FAILED', 'DEAD') AND ($1 = '' OR customer_id = $1) AND ($2 = '' OR source = $2) AND ($3 = '' OR status = $3)
  AND ($4::timestamptz IS NULL OR updated_at >= $4) AND ($5::timestamptz IS NULL OR updated_at < $5)
ORDER BY updated_at, source, event_id`

// TestBulkReplayFiltersNarrowLikePlainSQL: for every combination of the
// bulk replay's filters (customer_id, source, status, since, until) that
// the API accepts, over events of every status in two partitions with
// equal updated_at, the preview's matched is the plain statement's count
// and its events the plain statement's first limit rows, in order; a
// quoted value is a value (no injection).
func TestBulkReplayFiltersNarrowLikePlainSQL(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`CREATE TABLE events_b1 PARTITION OF events FOR VALUES IN (1)`)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, updated_at, bucket)
SELECT (ARRAY['stripe', 'github'])[1 + i % 2], 'evt_' || i, 'cus_' || (i % 3), 't',
  (ARRAY['PROCESSING', 'PROCESSED', 'FAILED', 'DEAD', 'PARKED'])[1 + i % 7 % 5],
  timestamptz '2026-11-30T10:00:00Z' + (i % 11) * interval '1 minute', i % 4 / 2
FROM generate_series(0, 299) AS i`)
	filters := []struct{ name, value string }{{"customer_id", "cus_1"}, {"source", "github"}, {"status", "DEAD"},
		{"since", "2026-11-30T10:03:00Z"}, {"until", "2026-11-30T10:08:00Z"}}
	for q, args := range filterSets(filters) {
		if q.Get("customer_id") == "" && q.Get("since") == "" {
			if rec := tb.get("/admin/replay/preview?" + q.Encode()); rec.Code != http.StatusBadRequest {
				t.Errorf("?%s: %d, want 400 (neither customer nor since)", q.Encode(), rec.Code)
			}
			continue
		}
		want := tb.column(plainReplaySQL, args...)
		for _, limit := range []int{5, 1000} {
			q.Set("limit", strconv.Itoa(limit))
			p := decodeBulk(t, tb.get("/admin/replay/preview?"+q.Encode()), http.StatusOK)
			first := want[:min(limit, len(want))]
			if p.Matched != len(want) || !slices.Equal(p.ids(), first) {
				t.Errorf("?%s: matched %d %v, want %d %v", q.Encode(), p.Matched, p.ids(), len(want), first)
			}
		}
	}
	for _, v := range []string{"cus_1' OR '1'='1", "cus_1'; DELETE FROM events; --"} {
		if p := decodeBulk(t, tb.get("/admin/replay/preview?customer_id="+url.QueryEscape(v)), http.StatusOK); p.Matched != 0 {
			t.Errorf("customer_id %q: %+v", v, p)
		}
	}
}

func (tb *testBundle) column(sql string, args ...any) []string {
	tb.t.Helper()
	rows, _ := tb.pool.Query(context.Background(), sql, args...)
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.t.Fatal(err)
		}
		out = append(out, s)
	}
	if rows.Err() != nil {
		tb.t.Fatal(rows.Err())
	}
	return out
}

// TestBulkReplayDoesNotReplayWhatChangedMeanwhile: the preview showed a
// customer's DEAD blocker; by the time the bulk replay's turn comes for
// it, another operator has replayed it (a single replay). The blocker is
// then FAILED again (a replayed blocker runs again as FAILED, due now),
// updated after the preview's until: it changed meanwhile and must be
// skipped, not replayed a second time (a second REPLAYED record, its
// retry window restarted by a request whose operator was shown the old
// DEAD state).
func TestBulkReplayDoesNotReplayWhatChangedMeanwhile(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	ctx := context.Background()
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset, updated_at) VALUES
  ('generic', 'blocker', 'cus', 'DEAD', 5, 0, 1, now() - interval '1 minute')`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition, next_attempt_at) VALUES
  ('generic', 'cus', 'PARKED', 'blocker', 0, NULL)`)
	until := time.Now().UTC().Format(time.RFC3339Nano)
	q := "customer_id=cus&until=" + url.QueryEscape(until)
	if p := decodeBulk(t, tb.get("/admin/replay/preview?"+q), http.StatusOK); !slices.Equal(p.ids(), []string{"blocker"}) {
		t.Fatalf("preview: %+v", p)
	}
	// Hold the customer's block so that both replays select, then wait.
	holder := tb.holdLock(`SELECT 1 FROM customer_blocks WHERE customer_id = 'cus' FOR UPDATE`)
	single := make(chan int, 1)
	go func() {
		single <- tb.do("POST", "/admin/events/generic/blocker/replay", "192.0.2.41:1", "Bearer "+token, admin.OperatorHeader, "other").Code
	}()
	tb.waitForLocks(`%customer_blocks%FOR UPDATE%`, 1)
	bulk := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		bulk <- tb.do("POST", "/admin/replay?"+q, "192.0.2.40:1", "Bearer "+token, admin.OperatorHeader, "bulk")
	}()
	tb.waitForLocks(`%customer_blocks%FOR UPDATE%`, 2)
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if code := <-single; code != http.StatusAccepted {
		t.Fatalf("the single replay: %d", code)
	}
	r := decodeBulk(t, <-bulk, http.StatusAccepted)
	if got := tb.reasons("blocker"); len(got) != 1 {
		t.Errorf("the blocker was replayed %d times: %q; bulk answer %+v", len(got), got, r)
	}
	if len(r.Replayed) != 0 || len(r.Skipped) != 1 {
		t.Errorf("bulk replay of an event replayed meanwhile: %+v, want it skipped", r)
	}
}

// waitForLocks waits until n queries LIKE pattern wait for a lock.
func (tb *testBundle) waitForLocks(pattern string, n int) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := tb.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
AND wait_event_type = 'Lock' AND query LIKE $1`, pattern).Scan(&waiting); err != nil {
			tb.t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%d queries like %q waited for a lock, want %d", waiting, pattern, n)
		}
		time.Sleep(5 * time.Millisecond) // polling for the state
	}
}

// TestEveryAdminRouteNeedsTheToken: no route under /admin/ answers or acts
// without the token (or with a wrong one): 401, and nothing changes.
func TestEveryAdminRouteNeedsTheToken(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{AuthFailureBurst: 1000}, true)
	tb.bulkEvents()
	before := tb.statuses()
	for _, r := range []struct{ method, target string }{
		{"GET", "/admin/auth"}, {"GET", "/admin/events"}, {"GET", "/admin/events?customer_id=c1"},
		{"GET", "/admin/events/generic/e1"}, {"GET", "/admin/events/generic/e1/body"},
		{"POST", "/admin/events/generic/e1/replay"}, {"GET", "/admin/customers/blocked"}, {"GET", "/admin/customers/parked"},
		{"POST", "/admin/customers/c1/unpark"}, {"POST", "/admin/customers/c1/unpark?skip_blocker=true"},
		{"GET", "/admin/replay/preview?customer_id=c1"}, {"POST", "/admin/replay?customer_id=c1"},
		{"GET", "/admin/audit/stream"}, {"GET", "/admin/overview"}, {"GET", "/admin/nope"}, {"POST", "/admin/events"},
	} {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + " extra"} {
			rec := tb.do(r.method, r.target, "192.0.2.50:1", auth, admin.OperatorHeader, "x")
			if rec.Code != http.StatusUnauthorized && !(strings.Contains(r.target, "nope") || r.method == "POST" && r.target == "/admin/events") {
				t.Errorf("%s %s with %q: %d %s", r.method, r.target, auth, rec.Code, rec.Body)
			}
			if rec.Code == http.StatusOK || rec.Code == http.StatusAccepted {
				t.Errorf("%s %s with %q answered %d", r.method, r.target, auth, rec.Code)
			}
		}
	}
	if after := tb.statuses(); !mapsEqual(before, after) {
		t.Errorf("unauthenticated requests changed events: %v -> %v", before, after)
	}
	for _, id := range []string{"e1", "e2", "e4", "e5"} {
		if got := tb.reasons(id); len(got) != 0 {
			t.Errorf("%s audited %q without the token", id, got)
		}
	}
}

// TestRepeatedQueryParameterIs400: a parameter given twice is ambiguous
// (a proxy or a script may read the last, the API read the first): on a
// bulk replay, since=…&customer_id=&customer_id=c2 replayed every
// customer's events of the range, and status=DEAD&status=FAILED only the
// DEAD ones. It is 400 bad_request, and nothing is replayed or audited.
func TestRepeatedQueryParameterIs400(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.bulkEvents()
	before := tb.statuses()
	since := url.QueryEscape(time.Now().Add(-24 * time.Hour).UTC().Format(time.RFC3339))
	for _, q := range []string{"since=" + since + "&customer_id=&customer_id=c2", "customer_id=c1&customer_id=c2",
		"customer_id=c1&status=DEAD&status=FAILED", "customer_id=c1&limit=1&limit=1000", "customer_id=c1&source=generic&source=stripe",
		"since=" + since + "&since=" + since} {
		for _, rec := range []*httptest.ResponseRecorder{tb.get("/admin/replay/preview?" + q), tb.post("/admin/replay?" + q),
			tb.get("/admin/events?" + q)} {
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"bad_request"`) {
				t.Errorf("%q: %d %s", q, rec.Code, rec.Body)
			}
		}
	}
	if after := tb.statuses(); !mapsEqual(before, after) {
		t.Errorf("refused requests changed events: %v -> %v", before, after)
	}
	for _, id := range []string{"e1", "e2", "e4", "e5"} {
		if got := tb.reasons(id); len(got) != 0 {
			t.Errorf("%s audited %q by a refused request", id, got)
		}
	}
}

// TestPagesWhileEventsChange: events that change between pages (their
// updated_at moves to now) leave the pages ahead of the cursor. Every
// event that did not change is still listed exactly once, in order, and
// one that changed is never listed twice.
func TestPagesWhileEventsChange(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`CREATE TABLE events_b1 PARTITION OF events FOR VALUES IN (1)`)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, updated_at, bucket)
SELECT (ARRAY['stripe', 'github'])[1 + i % 2], 'evt_' || i, 'cus', (ARRAY['FAILED', 'DEAD', 'PROCESSED'])[1 + i % 3],
  now() - interval '1 hour' + (i % 7) * interval '1 minute', i % 2
FROM generate_series(0, 59) AS i`)
	want := tb.plainList([]any{"", "", "", "", "", nil, nil})
	q := url.Values{"limit": {"7"}}
	seen, changed := map[string]int{}, map[string]bool{}
	var order []string
	for page := 0; ; page++ {
		rec := tb.get("/admin/events?" + q.Encode())
		var p struct {
			Events []struct {
				Source  string `json:"source"`
				EventID string `json:"event_id"`
			} `json:"events"`
			NextCursor string `json:"next_cursor"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &p) != nil {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		for _, e := range p.Events {
			k := e.Source + "/" + e.EventID
			seen[k]++
			order = append(order, k)
		}
		if p.NextCursor == "" {
			break
		}
		q.Set("cursor", p.NextCursor)
		// Between pages: one event already listed and one not yet listed
		// change (as the consumer or a replay changes them).
		if page < len(want) && page < 5 {
			for _, k := range []string{order[len(order)-1], want[len(want)-1-page]} {
				src, id, _ := strings.Cut(k, "/")
				tb.exec(`UPDATE events SET status = 'PROCESSED', updated_at = clock_timestamp() WHERE source = $1 AND event_id = $2`, src, id)
				changed[k] = true
			}
		}
	}
	var unchanged []string
	for _, k := range want {
		if !changed[k] {
			unchanged = append(unchanged, k)
		}
	}
	var listedUnchanged []string
	for _, k := range order {
		if seen[k] > 1 {
			t.Errorf("%s listed %d times", k, seen[k])
		}
		if !changed[k] {
			listedUnchanged = append(listedUnchanged, k)
		}
	}
	if !slices.Equal(listedUnchanged, unchanged) {
		t.Errorf("unchanged events listed:\n got %v\nwant %v", listedUnchanged, unchanged)
	}
}

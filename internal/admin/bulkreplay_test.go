package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/admin"
)

type bulkAnswer struct {
	Matched   int `json:"matched"`
	Remaining int `json:"remaining"`
	Events    []struct {
		EventID string `json:"event_id"`
		Status  string `json:"status"`
	} `json:"events"`
	Replayed []struct {
		EventID string `json:"event_id"`
		Status  string `json:"status"`
	} `json:"replayed"`
	Skipped []struct {
		EventID string `json:"event_id"`
	} `json:"skipped"`
}

func decodeBulk(t *testing.T, rec *httptest.ResponseRecorder, want int) bulkAnswer {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("%d %s, want %d", rec.Code, rec.Body, want)
	}
	var a bulkAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a bulkAnswer) ids() []string {
	var out []string
	for _, e := range a.Events {
		out = append(out, e.EventID)
	}
	for _, e := range a.Replayed {
		out = append(out, e.EventID)
	}
	return out
}

func (tb *testBundle) statuses() map[string]string {
	tb.t.Helper()
	rows, err := tb.pool.Query(context.Background(), `SELECT event_id, status FROM events`)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, s string
		if err := rows.Scan(&id, &s); err != nil {
			tb.t.Fatal(err)
		}
		out[id] = s
	}
	return out
}

// bulkEvents: customer c1 has a DEAD, a FAILED (its blocker) and a
// PROCESSED event; c2 a DEAD event updated two hours ago and one now.
func (tb *testBundle) bulkEvents() {
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset, updated_at) VALUES
  ('generic', 'e1', 'c1', 'DEAD', 1, 0, 1, now() - interval '3 minutes'),
  ('generic', 'e2', 'c1', 'FAILED', 2, 0, 2, now() - interval '2 minutes'),
  ('generic', 'e3', 'c1', 'PROCESSED', 1, 0, 3, now()),
  ('generic', 'e4', 'c2', 'DEAD', 1, 1, 1, now() - interval '2 hours'),
  ('generic', 'e5', 'c2', 'DEAD', 1, 1, 2, now())`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition, next_attempt_at) VALUES
  ('generic', 'c1', 'BLOCKED', 'e2', 0, now() + interval '1 hour')`)
}

// TestBulkReplayRefusesBadFilters: a filter that is malformed, or that
// names neither a customer nor a start of the range, is 400 from both the
// preview and the replay, and nothing is replayed or audited.
func TestBulkReplayRefusesBadFilters(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.bulkEvents()
	before := tb.statuses()
	for _, q := range []string{"", "status=DEAD", "source=generic", "customer_id=c1&status=PARKED", "customer_id=c1&status=dead",
		"customer_id=c1&limit=0", "customer_id=c1&limit=1001", "customer_id=c1&limit=x", "since=yesterday",
		"since=2026-11-30T10:00:00Z&until=2026-11-30T10:00:00Z", "since=2026-11-30T11:00:00Z&until=2026-11-30T10:00:00Z",
		"customer_id=%00", "customer_id=%ff"} {
		for _, rec := range []*httptest.ResponseRecorder{tb.get("/admin/replay/preview?" + q), tb.post("/admin/replay?" + q)} {
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"bad_request"`) {
				t.Errorf("%q: %d %s", q, rec.Code, rec.Body)
			}
		}
	}
	if rec := tb.post("/admin/replay?customer_id=c1", admin.OperatorHeader, "bad\toperator"); rec.Code != http.StatusBadRequest {
		t.Errorf("bad operator: %d %s", rec.Code, rec.Body)
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

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBulkReplayByCustomerAndByRange: the preview counts and lists what
// the replay then re-drives (FAILED and DEAD only, oldest update first,
// at most limit, the rest in remaining), changing nothing itself; the
// replay requeues each event as a single replay does and audits each
// REPLAYED under the operator.
func TestBulkReplayByCustomerAndByRange(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.bulkEvents()
	p := decodeBulk(t, tb.get("/admin/replay/preview?customer_id=c1"), http.StatusOK)
	if p.Matched != 2 || !slices.Equal(p.ids(), []string{"e1", "e2"}) {
		t.Fatalf("preview of c1: %+v", p)
	}
	for src, want := range map[string]int{"generic": 2, "stripe": 0} {
		if p := decodeBulk(t, tb.get("/admin/replay/preview?customer_id=c1&source="+src), http.StatusOK); p.Matched != want || len(p.Events) != want {
			t.Errorf("preview of c1 from %s: %+v, want %d", src, p, want)
		}
	}
	if s := tb.statuses(); s["e1"] != "DEAD" || s["e2"] != "FAILED" || len(tb.reasons("e1")) != 0 {
		t.Fatalf("the preview changed something: %v %q", s, tb.reasons("e1"))
	}
	r := decodeBulk(t, tb.post("/admin/replay?customer_id=c1&limit=1", admin.OperatorHeader, "console session 00aa"), http.StatusAccepted)
	if r.Matched != 2 || r.Remaining != 1 || !slices.Equal(r.ids(), []string{"e1"}) || r.Replayed[0].Status != "DEAD" {
		t.Fatalf("replay of c1, limit 1: %+v", r)
	}
	// e1 waits behind c1's blocker e2, which is still backing off.
	if s := tb.statuses(); s["e1"] != "PARKED" || s["e2"] != "FAILED" {
		t.Fatalf("after replaying e1: %v", s)
	}
	r = decodeBulk(t, tb.post("/admin/replay?customer_id=c1", admin.OperatorHeader, "console session 00aa"), http.StatusAccepted)
	if r.Matched != 1 || r.Remaining != 0 || !slices.Equal(r.ids(), []string{"e2"}) {
		t.Fatalf("replay of c1 again: %+v", r)
	}
	for _, id := range []string{"e1", "e2"} {
		if got := tb.reasons(id); len(got) != 1 || got[0] != "REPLAYED admin API: console session 00aa" {
			t.Errorf("%s audited %q", id, got)
		}
	}
	var due bool
	if err := tb.pool.QueryRow(context.Background(), `SELECT next_attempt_at <= now() FROM customer_blocks WHERE customer_id = 'c1'`).Scan(&due); err != nil || !due {
		t.Errorf("c1's blocker is not due now after its replay (%v)", err)
	}

	// By status and range: only e4, updated two hours ago.
	q := url.Values{"status": {"DEAD"}, "since": {time.Now().Add(-3 * time.Hour).UTC().Format(time.RFC3339)},
		"until": {time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}}.Encode()
	if p := decodeBulk(t, tb.get("/admin/replay/preview?"+q), http.StatusOK); p.Matched != 1 || !slices.Equal(p.ids(), []string{"e4"}) {
		t.Fatalf("preview of the range: %+v", p)
	}
	r = decodeBulk(t, tb.post("/admin/replay?"+q), http.StatusAccepted)
	if !slices.Equal(r.ids(), []string{"e4"}) || len(tb.reasons("e4")) != 1 || tb.reasons("e4")[0] != "REPLAYED admin API" {
		t.Fatalf("replay of the range: %+v, audited %q", r, tb.reasons("e4"))
	}
	if s := tb.statuses(); s["e4"] != "PARKED" || s["e5"] != "DEAD" || s["e3"] != "PROCESSED" {
		t.Errorf("after the range's replay: %v", s)
	}
}

// TestBulkReplaySkipsWhatChanged: an event selected while DEAD that the
// consumer finished before its turn (it waited for the event's lock) is
// listed as skipped, not replayed and not audited, and the request
// carries on with the next.
func TestBulkReplaySkipsWhatChanged(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	ctx := context.Background()
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset, updated_at) VALUES
  ('generic', 'first', 'cus', 'DEAD', 1, 0, 1, now() - interval '1 minute'), ('generic', 'second', 'cus', 'DEAD', 1, 0, 2, now())`)
	holder := tb.holdLock(`SELECT 1 FROM events WHERE event_id = 'first' FOR UPDATE`)
	answer := make(chan *httptest.ResponseRecorder, 1)
	go func() { answer <- tb.do("POST", "/admin/replay?customer_id=cus", "192.0.2.40:1", "Bearer "+token) }()
	tb.waitForLock(`%events%FOR UPDATE%`)
	if _, err := holder.Exec(ctx, `UPDATE events SET status = 'PROCESSED' WHERE event_id = 'first'`); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := decodeBulk(t, <-answer, http.StatusAccepted)
	if len(r.Skipped) != 1 || r.Skipped[0].EventID != "first" || !slices.Equal(r.ids(), []string{"second"}) {
		t.Fatalf("%+v", r)
	}
	if got := tb.reasons("first"); len(got) != 0 {
		t.Errorf("the skipped event was audited %q", got)
	}
}

// waitForLock waits until a query LIKE pattern waits for a lock.
func (tb *testBundle) waitForLock(pattern string) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := tb.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
AND wait_event_type = 'Lock' AND query LIKE $1`, pattern).Scan(&waiting); err != nil {
			tb.t.Fatal(err)
		}
		if waiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("no query like %q waited for a lock", pattern)
		}
		time.Sleep(5 * time.Millisecond) // polling for the state
	}
}

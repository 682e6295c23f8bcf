package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/apidocs/apidocstest"
)

// post sends an authorized POST with the given headers and checks the
// answer against the OpenAPI document.
func (tb *testBundle) post(target string, header ...string) *httptest.ResponseRecorder {
	tb.t.Helper()
	rec := tb.do("POST", target, "192.0.2.40:1", "Bearer "+token, header...)
	if err := apidocstest.Load(tb.t).Check(httptest.NewRequest("POST", target, nil), rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		tb.t.Errorf("POST %s: %v", target, err)
	}
	return rec
}

func (tb *testBundle) reasons(eventID string) []string {
	tb.t.Helper()
	rows, err := tb.pool.Query(context.Background(), `SELECT action || ' ' || coalesce(reason, '') || ' ' || coalesce(detail->>'note', '') FROM audit_log
WHERE event_id = $1 ORDER BY seq`, eventID)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

func (tb *testBundle) state(customer string) string {
	tb.t.Helper()
	var s string
	err := tb.pool.QueryRow(context.Background(), `SELECT coalesce((SELECT state FROM customer_blocks WHERE customer_id = $1), 'none')`, customer).Scan(&s)
	if err != nil {
		tb.t.Fatal(err)
	}
	return s
}

// TestOperatorNamedInAudit: X-Hookstream-Operator names who replayed or
// unparked in the audit record ("admin API: <operator>"); without it the
// reason is "admin API" as before; a malformed one is 400 and changes
// nothing.
func TestOperatorNamedInAudit(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset) VALUES
  ('generic', 'e1', 'c1', 'DEAD', 1, 0, 1), ('generic', 'e2', 'c2', 'DEAD', 1, 0, 2), ('generic', 'e3', 'c3', 'DEAD', 1, 0, 3)`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition) VALUES
  ('generic', 'c3', 'PARKED', 'e3', 0)`)

	for _, bad := range []string{"", strings.Repeat("x", 65), "line\tbreak", "ünïcode"} {
		if rec := tb.post("/admin/events/generic/e1/replay", admin.OperatorHeader, bad); rec.Code != http.StatusBadRequest {
			t.Errorf("operator %q: %d %s", bad, rec.Code, rec.Body)
		}
	}
	if got := tb.reasons("e1"); len(got) != 0 {
		t.Fatalf("a refused replay was audited: %v", got)
	}
	if rec := tb.post("/admin/events/generic/e1/replay", admin.OperatorHeader, "nightly-redrive@ops"); rec.Code != http.StatusAccepted {
		t.Fatalf("replay: %d %s", rec.Code, rec.Body)
	}
	if rec := tb.post("/admin/events/generic/e2/replay"); rec.Code != http.StatusAccepted {
		t.Fatalf("replay: %d %s", rec.Code, rec.Body)
	}
	if rec := tb.post("/admin/customers/c3/unpark?skip_blocker=true", admin.OperatorHeader, "console session 0123abcd"); rec.Code != http.StatusAccepted {
		t.Fatalf("unpark: %d %s", rec.Code, rec.Body)
	}
	for id, want := range map[string]string{
		"e1": "REPLAYED admin API: nightly-redrive@ops",
		"e2": "REPLAYED admin API",
		"e3": "UNPARKED blocker_skipped admin API: console session 0123abcd",
	} {
		if got := tb.reasons(id); len(got) != 1 || got[0] != want {
			t.Errorf("%s audited %q, want %q", id, got, want)
		}
	}
}

// TestUnparkExpectedBlocker: ?blocker= names the event the caller showed
// before skipping it; when the customer is blocked by another (or none)
// the unpark is 409 blocker_changed and nothing changes.
func TestUnparkExpectedBlocker(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset) VALUES
  ('generic', 'dead-2', 'cus', 'DEAD', 1, 0, 2)`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition) VALUES
  ('generic', 'cus', 'PARKED', 'dead-2', 0)`)
	rec := tb.post("/admin/customers/cus/unpark?skip_blocker=true&blocker=dead-1")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `"blocker_changed"`) || !strings.Contains(rec.Body.String(), `dead-2`) {
		t.Fatalf("stale blocker: %d %s", rec.Code, rec.Body)
	}
	if s := tb.state("cus"); s != "PARKED" {
		t.Fatalf("after a refused unpark: %s", s)
	}
	if rec := tb.post("/admin/customers/cus/unpark?skip_blocker=true&blocker=dead-2"); rec.Code != http.StatusAccepted {
		t.Fatalf("expected blocker: %d %s", rec.Code, rec.Body)
	}
	if s := tb.state("cus"); s != "DRAINING" {
		t.Fatalf("after the unpark: %s", s)
	}
	// Draining now: no blocker to skip.
	if rec := tb.post("/admin/customers/cus/unpark?skip_blocker=true&blocker=dead-2"); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "draining") {
		t.Errorf("draining: %d %s", rec.Code, rec.Body)
	}
	// Not blocked at all: the unpark's own answer.
	if rec := tb.post("/admin/customers/other/unpark?blocker=x"); rec.Code != http.StatusNotFound {
		t.Errorf("not blocked: %d %s", rec.Code, rec.Body)
	}
}

// TestUnparkChecksTheBlockerUnderTheLock: the expected blocker is checked
// inside the unpark's transaction, under the customer's lock. An unpark
// that waits for the lock while the customer's blocker changes (the
// consumer re-parked it behind another dead event) answers 409 and skips
// nothing. Before, the check read the blocker before the transaction,
// and the unpark then skipped an event nobody was shown.
func TestUnparkChecksTheBlockerUnderTheLock(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	ctx := context.Background()
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset) VALUES
  ('generic', 'dead-1', 'cus', 'DEAD', 1, 0, 1), ('generic', 'dead-2', 'cus', 'DEAD', 1, 0, 2)`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition) VALUES
  ('generic', 'cus', 'PARKED', 'dead-1', 0)`)
	holder := tb.holdLock(`SELECT 1 FROM customer_blocks WHERE customer_id = 'cus' FOR UPDATE`)
	answer := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		answer <- tb.do("POST", "/admin/customers/cus/unpark?skip_blocker=true&blocker=dead-1", "192.0.2.40:1", "Bearer "+token)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for waiting := 0; waiting == 0; {
		if err := tb.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
AND wait_event_type = 'Lock' AND query LIKE '%customer_blocks%FOR UPDATE%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the unpark never waited for the customer's lock")
		}
		time.Sleep(5 * time.Millisecond) // polling for the state
	}
	if _, err := holder.Exec(ctx, `UPDATE customer_blocks SET blocking_event_id = 'dead-2' WHERE customer_id = 'cus'`); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rec := <-answer
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `"blocker_changed"`) || !strings.Contains(rec.Body.String(), "dead-2") {
		t.Fatalf("unpark expecting dead-1 while dead-2 became the blocker: %d %s", rec.Code, rec.Body)
	}
	if s := tb.state("cus"); s != "PARKED" {
		t.Errorf("after the refused unpark: %s, want PARKED", s)
	}
	if got := tb.reasons("dead-2"); len(got) != 0 {
		t.Errorf("dead-2 was audited %q: skipped without being shown", got)
	}
}

// TestCheckAuth: GET /admin/auth is 200 for the token, 401 otherwise, and
// its failures count against the address like any admin route's.
func TestCheckAuth(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{AuthFailureBurst: 2}, false)
	if rec := tb.get("/admin/auth"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"authenticated":true`) {
		t.Errorf("token: %d %s", rec.Code, rec.Body)
	}
	const client = "198.51.100.50:1"
	for range 2 {
		if rec := tb.do("GET", "/admin/auth", client, "Bearer wrong"); rec.Code != http.StatusUnauthorized {
			t.Errorf("wrong: %d", rec.Code)
		}
	}
	if rec := tb.do("GET", "/admin/customers/blocked", client, "Bearer "+token); rec.Code != http.StatusTooManyRequests {
		t.Errorf("after two failures at /admin/auth, another route: %d", rec.Code)
	}
}

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/consumer"
)

func (st *stack) admin(method, path, token string) (int, []byte) {
	st.t.Helper()
	req, _ := http.NewRequest(method, st.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := st.client.Do(req)
	if err != nil {
		st.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (st *stack) count(query string) int {
	st.t.Helper()
	var n int
	if err := st.pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		st.t.Fatal(err)
	}
	return n
}

// TestAdminAPI: an operator finds a parked customer, reads the blocking
// event's trail, skips the blocker, and the parked events are processed in
// order; the API refuses requests without the token.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	h := consumer.HandlerFunc(func(_ context.Context, _ pgx.Tx, ev *consumer.Event) error {
		if ev.EventID == "evt_poison" {
			return consumer.Permanent(errors.New("422 from destination"))
		}
		if ev.CustomerID == "cus_p" {
			mu.Lock()
			order = append(order, ev.EventID)
			mu.Unlock()
		}
		return nil
	})
	st := start(t, h, consumer.RetryPolicy{MaxAttempts: 1})

	if code, _ := st.admin("GET", "/admin/customers/parked", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := st.admin("GET", "/admin/customers/parked", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	for _, id := range []string{"evt_poison", "evt_p1", "evt_p2"} {
		if got := st.post(id, "cus_p", true); got != 202 {
			t.Fatalf("%s: %d", id, got)
		}
	}
	st.eventually(time.Minute, "customer parked with two waiting", func() (bool, error) {
		return st.count(`SELECT count(*) FROM events WHERE customer_id = 'cus_p' AND status = 'PARKED'`) == 2, nil
	})

	code, body := st.admin("GET", "/admin/customers/parked", adminToken)
	var parked []consumer.Blocked
	if err := json.Unmarshal(body, &parked); code != 200 || err != nil || len(parked) != 1 ||
		parked[0].CustomerID != "cus_p" || parked[0].BlockingEventID != "evt_poison" || parked[0].Waiting != 2 {
		t.Fatalf("parked: %d %s", code, body)
	}
	code, body = st.admin("GET", "/admin/events/generic/evt_poison", adminToken)
	var ev struct {
		Status    string `json:"status"`
		LastError string `json:"last_error"`
		Trail     []struct {
			Action string `json:"action"`
		} `json:"trail"`
	}
	if err := json.Unmarshal(body, &ev); code != 200 || err != nil || ev.Status != "DEAD" || ev.LastError == "" || len(ev.Trail) < 4 {
		t.Fatalf("event: %d %s", code, body)
	}
	if code, body := st.admin("GET", "/admin/events?customer_id=cus_p&status=PARKED&limit=1", adminToken); code != 200 {
		t.Fatalf("list: %d %s", code, body)
	} else {
		var page struct {
			Events []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
			Next string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil || len(page.Events) != 1 || page.Next == "" {
			t.Fatalf("list page 1: %s", body)
		}
		_, body2 := st.admin("GET", "/admin/events?customer_id=cus_p&status=PARKED&limit=1&cursor="+page.Next, adminToken)
		var page2 struct {
			Events []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
			Next string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body2, &page2); err != nil || len(page2.Events) != 1 || page2.Next != "" || page2.Events[0].EventID == page.Events[0].EventID {
			t.Fatalf("list page 2: %s after %s", body2, body)
		}
	}
	if code, _ := st.admin("GET", "/admin/events?status=NOPE", adminToken); code != 400 {
		t.Errorf("bad status filter: %d", code)
	}
	if code, _ := st.admin("POST", "/admin/events/generic/evt_p1/replay", adminToken); code != http.StatusConflict {
		t.Errorf("replaying a parked event that is not the blocker: %d, want 409", code)
	}
	if code, _ := st.admin("POST", "/admin/customers/cus_nobody/unpark", adminToken); code != http.StatusNotFound {
		t.Errorf("unparking a customer that is not parked: %d", code)
	}

	if code, body := st.admin("POST", "/admin/customers/cus_p/unpark?skip_blocker=true", adminToken); code != http.StatusAccepted {
		t.Fatalf("unpark: %d %s", code, body)
	}
	st.eventually(time.Minute, "parked events processed", func() (bool, error) {
		return st.count(`SELECT count(*) FROM events WHERE customer_id = 'cus_p' AND status = 'PROCESSED'`) == 2 &&
			st.count(`SELECT count(*) FROM customer_blocks`) == 0, nil
	})
	if got := st.count(`SELECT count(*) FROM events WHERE event_id = 'evt_poison' AND status = 'DEAD'`); got != 1 {
		t.Errorf("the skipped blocker should stay DEAD")
	}
	mu.Lock()
	if len(order) != 2 || order[0] != "evt_p1" || order[1] != "evt_p2" {
		t.Errorf("parked events processed in order %v, want [evt_p1 evt_p2]", order)
	}
	mu.Unlock()
	if got := st.count(`SELECT count(*) FROM audit_log WHERE action = 'UNPARKED' AND customer_id = 'cus_p' AND actor = 'admin'`); got != 1 {
		t.Errorf("UNPARKED by admin rows: %d", got)
	}
}

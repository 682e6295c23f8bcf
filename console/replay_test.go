package console_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hookstream/hookstream/internal/admin"
)

// TestBulkReplay: the preview names every event the replay re-drives
// and changes nothing; the confirmation replays exactly those, as the
// session (audited REPLAYED under its name), and the batch's page shows
// each one's status now; a bad filter is shown, not replayed; the POST
// needs the CSRF token like every action.
func TestBulkReplay(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset, updated_at) VALUES
  ('generic', 'd1', 'cus_b', 'order.created', 'DEAD', 1, 0, 1, now() - interval '2 minutes'),
  ('generic', 'd2', 'cus_b', 'order.created', 'FAILED', 1, 0, 2, now() - interval '1 minute'),
  ('generic', 'ok', 'cus_b', 'order.created', 'PROCESSED', 1, 0, 3, now()),
  ('generic', 'other', 'cus_c', 'order.created', 'DEAD', 1, 1, 1, now())`)
	b := tb.browser("192.0.2.30:1")
	b.login()

	rec := b.do("GET", "/console/replay?status=DEAD", nil)
	if rec.Code != http.StatusBadRequest || !strings.Contains(html.UnescapeString(rec.Body.String()), "name a customer_id") {
		t.Errorf("no customer nor range: %d %s", rec.Code, rec.Body)
	}
	page := b.do("GET", "/console/replay?customer_id=cus_b", nil).Body.String()
	if !strings.Contains(page, `class="will-replay">2<`) || !strings.Contains(page, `data-event="d1"`) ||
		!strings.Contains(page, `data-event="d2"`) || strings.Contains(page, `data-event="ok"`) || strings.Contains(page, `data-event="other"`) {
		t.Fatalf("preview of cus_b:\n%s", page)
	}
	if s := tb.scalar(`SELECT string_agg(status, ',' ORDER BY event_id) FROM events`); s != "DEAD,FAILED,PROCESSED,DEAD" {
		t.Fatalf("the preview changed something: %s", s)
	}
	form := url.Values{"csrf": {b.csrf}, "customer_id": {"cus_b"}, "until": {regexpFind(t, page, `name="until" value="([^"]+)"`)}}
	if rec := b.do("POST", "/console/replay", url.Values{"customer_id": {"cus_b"}}); rec.Code != http.StatusForbidden {
		t.Errorf("without the CSRF token: %d", rec.Code)
	}
	rec = b.do("POST", "/console/replay", form)
	if rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/console/replay/batches/") {
		t.Fatalf("replay: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	page = b.do("GET", rec.Header().Get("Location"), nil).Body.String()
	if !strings.Contains(page, `class="replayed">2<`) || !strings.Contains(page, `hx-trigger="every 2s"`) {
		t.Errorf("batch page:\n%s", page)
	}
	for _, id := range []string{"d1", "d2"} {
		if got := tb.scalar(`SELECT string_agg(reason, ',') FROM audit_log WHERE event_id = $1 AND action = 'REPLAYED'`, id); got != "admin API: "+b.operator() {
			t.Errorf("%s audited %q", id, got)
		}
	}
	if s := tb.scalar(`SELECT status FROM events WHERE event_id = 'other'`); s != "DEAD" {
		t.Errorf("another customer's event was replayed: %s", s)
	}
	for _, op := range []string{"previewBulkReplay", "bulkReplay", "listEvents"} {
		if !strings.Contains(strings.Join(tb.called(), " "), op) {
			t.Errorf("the console did not call %s: %v", op, tb.called())
		}
	}
	if rec := b.do("GET", "/console/replay/batches/999", nil); rec.Code != http.StatusNotFound {
		t.Errorf("another batch: %d", rec.Code)
	}
}

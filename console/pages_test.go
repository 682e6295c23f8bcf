package console_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hookstream/hookstream/internal/admin"
)

// TestEventsSearch: the search page lists what the admin API's filters
// select, newest first, fifty to a page, with a link to the next page
// that keeps the filters; a time that is not one is a clear error.
func TestEventsSearch(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, updated_at)
SELECT 'generic', 'evt_' || lpad(i::text, 3, '0'), 'cus_' || (i % 2), 'invoice.paid', 'PROCESSED', '2026-11-30T10:00:00Z'::timestamptz + i * interval '1 minute'
FROM generate_series(1, 120) i`)
	b := tb.browser("192.0.2.20:1")
	b.login()
	page := b.do("GET", "/console/events?source=generic&customer_id=cus_0&since=2026-11-30T10:30", nil).Body.String()
	// cus_0 has the even ones; since 10:30 leaves 30..120: 46 events, on one page.
	if n := strings.Count(page, `class="event-link"`); n != 46 {
		t.Errorf("%d events listed, want 46", n)
	}
	if first, last := strings.Index(page, ">evt_120<"), strings.Index(page, ">evt_030<"); first < 0 || last < first || strings.Contains(page, ">evt_028<") {
		t.Errorf("not newest first from evt_120 to evt_030")
	}
	if strings.Contains(page, `rel="next"`) {
		t.Error("a next page link on the last page")
	}

	page = b.do("GET", "/console/events?customer_id=cus_1", nil).Body.String()
	if n := strings.Count(page, `class="event-link"`); n != 50 {
		t.Fatalf("first page: %d events, want 50", n)
	}
	next := html.UnescapeString(regexpFind(t, page, `rel="next" href="([^"]+)"`))
	u, err := url.Parse(next)
	if err != nil || u.Query().Get("customer_id") != "cus_1" || u.Query().Get("cursor") == "" {
		t.Fatalf("next page link %q", next)
	}
	page = b.do("GET", next, nil).Body.String()
	if n := strings.Count(page, `class="event-link"`); n != 10 || !strings.Contains(page, ">evt_001<") || strings.Contains(page, ">evt_002<") {
		t.Errorf("second page: %d events", n)
	}

	rec := b.do("GET", "/console/events?since=yesterday", nil)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "since: not a time") {
		t.Errorf("a bad time: %d", rec.Code)
	}
}

// TestEventPage: an event's page shows its state, its body pretty-printed
// (escaped: a body is a stranger's text), and its audit trail in order.
func TestEventPage(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset, last_error, payload)
VALUES ('generic', 'ord/1', 'cus_9', 'order.created', 'DEAD', 3, 2, 41, 'destination answered 400',
        convert_to('{"event_id":"ord/1","note":"<script>alert(1)</script>","amount":1200}', 'UTF8'))`)
	tb.exec(`INSERT INTO audit_log (schema_version, audit_id, source, event_id, customer_id, action, reason, actor, instance, at, attempt) VALUES
  (2, gen_random_uuid(), 'generic', 'ord/1', 'cus_9', 'ACCEPTED', NULL, 'ingest', 'rcv-1', '2026-11-30T10:00:00Z', NULL),
  (2, gen_random_uuid(), 'generic', 'ord/1', 'cus_9', 'FAILED', 'http_500', 'consumer', 'con-1', '2026-11-30T10:00:01Z', 1),
  (2, gen_random_uuid(), 'generic', 'ord/1', 'cus_9', 'DEAD_LETTERED', 'permanent_failure', 'consumer', 'con-1', '2026-11-30T10:00:05Z', 3)`)
	b := tb.browser("192.0.2.21:1")
	b.login()
	// The search links to the page with the "/" of the id encoded.
	list := b.do("GET", "/console/events?event_id=ord%2F1", nil).Body.String()
	link := regexpFind(t, list, `class="event-link" href="([^"]+)"`)
	if link != "/console/events/generic/ord%2f1" && link != "/console/events/generic/ord%2F1" {
		t.Fatalf("link %q", link)
	}
	rec := b.do("GET", html.UnescapeString(link), nil)
	page := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("event page: %d %s", rec.Code, page)
	}
	for _, want := range []string{
		`id="event-status">DEAD<`, "cus_9", "order.created", "hookstream.events 2 / 41", "destination answered 400",
		"\n  &#34;amount&#34;: 1200", "&lt;script&gt;alert(1)&lt;/script&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("the body's markup reached the page unescaped")
	}
	a, f, d := strings.Index(page, ">ACCEPTED<"), strings.Index(page, ">FAILED<"), strings.Index(page, ">DEAD_LETTERED<")
	if a < 0 || f < a || d < f || !strings.Contains(page, "permanent_failure") {
		t.Errorf("the trail is not ACCEPTED, FAILED, DEAD_LETTERED in order (%d %d %d)", a, f, d)
	}

	if rec := b.do("GET", "/console/events/generic/nope", nil); rec.Code != http.StatusNotFound {
		t.Errorf("no such event: %d", rec.Code)
	}
}

// TestSkipConfirmation: skipping a blocker first shows what it skips and
// how many events run without it; when the customer is blocked by another
// event by the time the operator confirms, nothing is skipped and the
// page says why.
func TestSkipConfirmation(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset) VALUES
  ('generic', 'bad-1', 'cus_5', 'DEAD', 1, 0, 1), ('generic', 'w-1', 'cus_5', 'PARKED', 0, 0, 2), ('generic', 'w-2', 'cus_5', 'PARKED', 0, 0, 3)`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition) VALUES
  ('generic', 'cus_5', 'PARKED', 'bad-1', 0)`)
	b := tb.browser("192.0.2.22:1")
	b.login()
	customers := b.do("GET", "/console/customers", nil).Body.String()
	skip := html.UnescapeString(regexpFind(t, customers, `class="button danger" href="([^"]+)"`))
	page := b.do("GET", skip, nil).Body.String()
	for _, want := range []string{`<strong class="blocker">bad-1</strong>`, "<strong>2</strong> event(s) waiting", `name="blocker" value="bad-1"`, "Skip bad-1 and run 2 waiting event(s)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the confirmation lacks %q", want)
		}
	}
	// Meanwhile bad-1 was resolved and bad-2 parks the customer.
	tb.exec(`UPDATE customer_blocks SET blocking_event_id = 'bad-2' WHERE customer_id = 'cus_5'`)
	rec := b.do("POST", "/console/customers/unpark", url.Values{"csrf": {b.csrf}, "customer_id": {"cus_5"}, "source": {"generic"},
		"skip_blocker": {"true"}, "blocker": {"bad-1"}})
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("unpark: %d", rec.Code)
	}
	page = b.do("GET", "/console/customers", nil).Body.String()
	if !strings.Contains(page, "blocker_changed") || !strings.Contains(page, "bad-2") {
		t.Errorf("the page does not say the blocker changed")
	}
	if s := tb.scalar(`SELECT state || ' ' || blocking_event_id FROM customer_blocks WHERE customer_id = 'cus_5'`); s != "PARKED bad-2" {
		t.Errorf("the customer is %s", s)
	}
}

func regexpFind(t *testing.T, s, pattern string) string {
	t.Helper()
	m := regexpMust(pattern).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s in:\n%s", pattern, s)
	}
	return m[1]
}

// TestReplayFromEventPage: a DEAD event's page offers a replay; it needs
// the CSRF token, and once done the event is requeued, the page says so,
// and the audit record names the operator's session.
func TestReplayFromEventPage(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset) VALUES
  ('generic', 'gone/1', 'cus_7', 'DEAD', 8, 1, 7)`)
	b := tb.browser("192.0.2.23:1")
	b.login()
	page := b.do("GET", "/console/events/generic/gone%2F1", nil).Body.String()
	if !strings.Contains(page, `action="/console/events/replay"`) {
		t.Fatal("a DEAD event's page has no replay form")
	}
	form := url.Values{"source": {"generic"}, "event_id": {"gone/1"}}
	if rec := b.do("POST", "/console/events/replay", form); rec.Code != http.StatusForbidden {
		t.Errorf("replay without CSRF: %d", rec.Code)
	}
	form.Set("csrf", b.csrf)
	rec := b.do("POST", "/console/events/replay", form)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/events/generic/gone%2F1" {
		t.Fatalf("replay: %d %v", rec.Code, rec.Header())
	}
	page = b.do("GET", rec.Header().Get("Location"), nil).Body.String()
	if !strings.Contains(page, "Replaying gone/1") || strings.Contains(page, `action="/console/events/replay"`) {
		t.Errorf("after the replay the page does not say so, or still offers it")
	}
	want := "REPLAYED admin API: " + b.operator()
	if got := tb.scalar(`SELECT action || ' ' || reason FROM audit_log WHERE event_id = 'gone/1'`); got != want {
		t.Errorf("audited %q, want %q", got, want)
	}
}

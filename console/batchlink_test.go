package console_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hookstream/hookstream/internal/admin"
)

// TestBatchPageLinksToTheRest: when a bulk replay's filter matched more
// than its limit, the batch's page links to the replay form with the same
// filter, to preview the rest. html/template escapes a value placed after
// "?" in a URL as one query component ("=" as %3d, "&" as %26), so the
// link must be built whole, not from the form's encoded values.
func TestBatchPageLinksToTheRest(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset, updated_at) VALUES
  ('generic', 'r1', 'cus_r', 'order.created', 'DEAD', 1, 0, 1, now() - interval '2 minutes'),
  ('generic', 'r2', 'cus_r', 'order.created', 'DEAD', 1, 0, 2, now() - interval '1 minute')`)
	b := tb.browser("192.0.2.91:1")
	b.login()
	page := b.do("GET", "/console/replay?customer_id=cus_r&limit=1", nil).Body.String()
	form := url.Values{"csrf": {b.csrf}, "customer_id": {"cus_r"}, "limit": {"1"},
		"until": {regexpFind(t, page, `name="until" value="([^"]+)"`)}}
	rec := b.do("POST", "/console/replay", form)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("replay: %d %s", rec.Code, rec.Body)
	}
	page = b.do("GET", rec.Header().Get("Location"), nil).Body.String()
	more := html.UnescapeString(regexpFind(t, page, `<a href="([^"]+)">1 more match</a>`))
	u, err := url.Parse(more)
	if err != nil || u.Path != "/console/replay" || u.Query().Get("customer_id") != "cus_r" || u.Query().Get("limit") != "1" {
		t.Fatalf("the link to the rest is %q: query %v", more, u.Query())
	}
	page = b.do("GET", more, nil).Body.String()
	if !strings.Contains(page, `class="will-replay">1<`) || !strings.Contains(page, `data-event="r2"`) {
		t.Errorf("the link to the rest does not preview it:\n%s", page)
	}
}

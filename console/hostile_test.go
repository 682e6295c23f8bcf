package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hookstream/hookstream/internal/admin"
)

// TestHostileTextIsEscapedEverywhere: ids, types, errors, bodies, audit
// reasons and details are a stranger's text (a provider's payload names
// them). Each page that shows them, in text, attributes, links and htmx
// attributes alike, shows them escaped: no markup of theirs reaches a page.
func TestHostileTextIsEscapedEverywhere(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	const x = `x"'><script>alert(1)</script><img src=x onerror=alert(2)>{{7*7}}javascript:alert(3)`
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset, last_error, payload, updated_at) VALUES
  ('generic', $1, $1, $1, 'DEAD', 1, 0, 1, $1, convert_to($1, 'UTF8'), now() - interval '2 minutes'),
  ('generic', $1 || 'f', $1, $1, 'FAILED', 1, 0, 2, $1, convert_to('{"a":' || to_json($1::text)::text || '}', 'UTF8'), now() - interval '1 minute')`, x)
	tb.exec(`INSERT INTO audit_log (schema_version, audit_id, source, event_id, customer_id, action, reason, actor, instance, at, detail) VALUES
  (2, gen_random_uuid(), 'generic', $1, $1, 'FAILED', $1, 'consumer', $1, now(), jsonb_build_object('error', $1::text))`, x)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition) VALUES
  ('generic', $1, 'PARKED', $1, 0)`, x)
	b := tb.browser("192.0.2.92:1")
	b.login()
	check := func(what, body string) {
		t.Helper()
		for _, bad := range []string{"<script>alert", "<img src=x", `x"'>`, "x\"'&gt;"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s shows %q unescaped", what, bad)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") && !strings.Contains(body, `\u003cscript\u003e`) {
			t.Errorf("%s does not show the text at all", what)
		}
	}
	idPath := "/console/events/generic/" + url.PathEscape(x)
	for _, page := range []string{
		"/console/events?customer_id=" + url.QueryEscape(x),
		idPath,
		idPath + "f",
		"/console/customers",
		"/console/customers/skip?source=generic&customer_id=" + url.QueryEscape(x),
		"/console/replay?customer_id=" + url.QueryEscape(x),
		"/console/tail?customer_id=" + url.QueryEscape(x),
	} {
		rec := b.do("GET", page, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", page, rec.Code)
		}
		check(page, rec.Body.String())
	}
	// An action's outcome (the flash) names the event too.
	rec := b.do("POST", "/console/events/replay", url.Values{"csrf": {b.csrf}, "source": {"generic"}, "event_id": {x}})
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("replay: %d %s", rec.Code, rec.Body)
	}
	rec = b.do("GET", rec.Header().Get("Location"), nil)
	if !strings.Contains(rec.Body.String(), `class="flash"`) {
		t.Errorf("no flash after the replay")
	}
	check("the event page after a replay", rec.Body.String())
}

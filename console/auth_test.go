package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/admin"
)

// TestLoginRefusesWrongTokenAndThrottles: a wrong token is 401 with no
// session; the failures count against the address in the admin API's own
// throttle, so after the burst the address is refused (429, Retry-After)
// at the login and at /admin alike, even with the right token, while
// another address logs in.
func TestLoginRefusesWrongTokenAndThrottles(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{AuthFailureBurst: 3, AuthFailureEvery: time.Hour})
	attacker := tb.browser("198.51.100.7:4000")
	for i, guess := range []string{"guess-1", "guess-2", "guess-3"} {
		rec := attacker.do("POST", "/console/login", url.Values{"token": {guess}})
		if rec.Code != http.StatusUnauthorized || attacker.cookie != "" || !strings.Contains(rec.Body.String(), "not the admin token") {
			t.Fatalf("wrong token %d: %d, cookie %q", i+1, rec.Code, attacker.cookie)
		}
	}
	rec := attacker.do("POST", "/console/login", url.Values{"token": {token}})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || attacker.cookie != "" {
		t.Errorf("the right token after the burst: %d %v, cookie %q", rec.Code, rec.Header(), attacker.cookie)
	}
	rec = attacker.do("GET", "/admin/customers/blocked", nil, "Authorization", "Bearer "+token)
	if rec.Code != http.StatusTooManyRequests {
		t.Errorf("the admin API from the same address: %d", rec.Code)
	}
	tb.browser("198.51.100.8:4000").login()
}

// TestSessionCookie: the session cookie is HttpOnly, SameSite=Strict,
// scoped to /console, expires with the session, and is Secure when the
// browser came over TLS (a proxy's X-Forwarded-Proto: https) but not over
// plain HTTP, where a Secure cookie would never come back.
func TestSessionCookie(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	for _, tls := range []bool{false, true} {
		b := tb.browser("192.0.2.1:1")
		proto := ""
		if tls {
			proto = "https"
		}
		rec := b.do("POST", "/console/login", url.Values{"token": {token}}, "X-Forwarded-Proto", proto)
		cookies := rec.Result().Cookies()
		if rec.Code != http.StatusSeeOther || len(cookies) != 1 {
			t.Fatalf("login: %d %v", rec.Code, cookies)
		}
		c := cookies[0]
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || c.Secure != tls || c.MaxAge != 3600 {
			t.Errorf("TLS %v: cookie %+v", tls, c)
		}
		if loc := rec.Header().Get("Location"); loc != "/console/events" {
			t.Errorf("after login: Location %q", loc)
		}
	}
}

// TestTokenNeverInURL: only a POSTed form logs in. A token in the query
// string of the login page or of the POST is ignored.
func TestTokenNeverInURL(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{AuthFailureBurst: 100})
	b := tb.browser("192.0.2.2:1")
	if rec := b.do("GET", "/console/login?token="+token, nil); rec.Code != http.StatusOK || b.cookie != "" {
		t.Errorf("GET with the token in the URL: %d, cookie %q", rec.Code, b.cookie)
	}
	if rec := b.do("POST", "/console/login?token="+token, url.Values{}); rec.Code != http.StatusUnauthorized || b.cookie != "" {
		t.Errorf("POST with the token in the URL only: %d, cookie %q", rec.Code, b.cookie)
	}
	page := b.do("GET", "/console/login", nil).Body.String()
	if !strings.Contains(page, `method="post" action="/console/login"`) || !strings.Contains(page, `type="password"`) {
		t.Errorf("the login form is not a POST of a password field:\n%s", page)
	}
}

// TestPagesNeedSession: without a live session a page sends the browser
// to the login (an htmx request is told to go there with 401), and so
// does a made-up or expired cookie.
func TestPagesNeedSession(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	b := tb.browser("192.0.2.3:1")
	for _, page := range []string{"/console/events", "/console/events/generic/e1", "/console/customers", "/console/customers/skip?customer_id=c"} {
		if rec := b.do("GET", page, nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/login" {
			t.Errorf("%s without a session: %d %v", page, rec.Code, rec.Header())
		}
		if rec := b.do("GET", page, nil, "HX-Request", "true"); rec.Code != http.StatusUnauthorized || rec.Header().Get("HX-Redirect") != "/console/login" {
			t.Errorf("%s by htmx without a session: %d %v", page, rec.Code, rec.Header())
		}
	}
	b.cookie = "made-up"
	if rec := b.do("GET", "/console/events", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("made-up cookie: %d", rec.Code)
	}
	b.login()
	tb.clock.advance(59 * time.Minute)
	if rec := b.do("GET", "/console/events", nil); rec.Code != http.StatusOK {
		t.Errorf("before expiry: %d", rec.Code)
	}
	tb.clock.advance(time.Minute)
	if rec := b.do("GET", "/console/events", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("at expiry: %d", rec.Code)
	}
}

// TestActionsNeedSessionAndCSRF: an unpark without a session, without
// the CSRF token, with another session's, or sent by another site's page
// is refused and changes nothing; with all of them it happens, audited
// under the operator's session.
func TestActionsNeedSessionAndCSRF(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset) VALUES
  ('generic', 'blocker', 'cus_1', 'DEAD', 1, 0, 1)`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition) VALUES
  ('generic', 'cus_1', 'PARKED', 'blocker', 0)`)
	b, other := tb.browser("192.0.2.4:1"), tb.browser("192.0.2.5:1")
	b.login()
	other.login()
	form := func(csrf string) url.Values {
		return url.Values{"customer_id": {"cus_1"}, "source": {"generic"}, "skip_blocker": {"true"}, "blocker": {"blocker"}, "csrf": {csrf}}
	}
	anonymous := tb.browser("192.0.2.4:1")
	for _, c := range []struct {
		name   string
		b      *browser
		form   url.Values
		header []string
		want   int
	}{
		{"no session", anonymous, form(b.csrf), nil, http.StatusUnauthorized},
		{"no CSRF token", b, form(""), nil, http.StatusForbidden},
		{"a wrong CSRF token", b, form(b.csrf + "x"), nil, http.StatusForbidden},
		{"another session's CSRF token", b, form(other.csrf), nil, http.StatusForbidden},
		{"another site's page (Origin)", b, form(b.csrf), []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"Origin null", b, form(b.csrf), []string{"Origin", "null"}, http.StatusForbidden},
		{"another site's page (Sec-Fetch-Site)", b, form(b.csrf), []string{"Origin", "", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
	} {
		rec := c.b.do("POST", "/console/customers/unpark", c.form, c.header...)
		if rec.Code != c.want {
			t.Errorf("%s: %d, want %d", c.name, rec.Code, c.want)
		}
		if s := tb.scalar(`SELECT state FROM customer_blocks WHERE customer_id = 'cus_1'`); s != "PARKED" {
			t.Fatalf("%s: the customer is %s", c.name, s)
		}
	}
	if n := tb.scalar(`SELECT count(*)::text FROM audit_log`); n != "0" {
		t.Fatalf("refused actions were audited: %s records", n)
	}

	// The CSRF token in the header (as htmx sends it) does as well as the field.
	rec := b.do("POST", "/console/customers/unpark", form(""), "X-CSRF-Token", b.csrf)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/customers" {
		t.Fatalf("unpark: %d %s", rec.Code, rec.Body)
	}
	if s := tb.scalar(`SELECT state FROM customer_blocks WHERE customer_id = 'cus_1'`); s != "DRAINING" {
		t.Errorf("after the unpark: %s", s)
	}
	want := "UNPARKED blocker_skipped admin API: " + b.operator()
	if got := tb.scalar(`SELECT action || ' ' || reason || ' ' || (detail->>'note') FROM audit_log WHERE event_id = 'blocker'`); got != want {
		t.Errorf("audited %q, want %q", got, want)
	}
	if got := strings.Join(tb.called(), " "); !strings.Contains(got, "unparkCustomer") {
		t.Errorf("the console's admin API calls: %s", got)
	}
}

// TestLoginFromAnotherSiteRefused: the login form has no session to
// carry a CSRF token, so a login POSTed by another site's page is refused
// by its origin.
func TestLoginFromAnotherSiteRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	b := tb.browser("192.0.2.6:1")
	if rec := b.do("POST", "/console/login", url.Values{"token": {token}}, "Origin", "https://evil.example"); rec.Code != http.StatusForbidden || b.cookie != "" {
		t.Errorf("cross-site login: %d, cookie %q", rec.Code, b.cookie)
	}
}

// TestLogout: logging out needs the CSRF token, ends the session on the
// server (the old cookie is worth nothing after) and deletes the cookie.
func TestLogout(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	b := tb.browser("192.0.2.7:1")
	b.login()
	if rec := b.do("POST", "/console/logout", url.Values{}); rec.Code != http.StatusForbidden {
		t.Errorf("logout without CSRF: %d", rec.Code)
	}
	old := b.cookie
	rec := b.do("POST", "/console/logout", url.Values{"csrf": {b.csrf}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/console/login" || b.cookie != "" {
		t.Fatalf("logout: %d %v, cookie %q", rec.Code, rec.Header(), b.cookie)
	}
	b.cookie = old
	if rec := b.do("GET", "/console/events", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("the old cookie after logout: %d", rec.Code)
	}
}

// TestSecurityHeaders: pages load nothing from another host, cannot be
// framed and are not cached.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	rec := tb.browser("192.0.2.8:1").do("GET", "/console/login", nil)
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers: %v", rec.Header())
	}
	for _, asset := range []string{"/console/static/htmx.min.js", "/console/static/console.css"} {
		if rec := tb.browser("192.0.2.8:1").do("GET", asset, nil); rec.Code != http.StatusOK || rec.Body.Len() < 100 {
			t.Errorf("%s: %d, %d bytes", asset, rec.Code, rec.Body.Len())
		}
	}
}

// TestLiveSessionOutlastsAThrottledAddress: behind a proxy every operator
// has the proxy's address. A stranger's wrong tokens through it throttle
// that address, which refuses its logins and its bearer-token calls (the
// guesses the throttle is for), but not the pages and actions of a session
// that logged in before: its calls were made with the configured token on
// its behalf and answered 429 too, shutting every operator out.
func TestLiveSessionOutlastsAThrottledAddress(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{AuthFailureBurst: 3, AuthFailureEvery: time.Hour})
	const proxy = "10.0.0.1:8080"
	operator := tb.browser(proxy)
	operator.login()
	stranger := tb.browser(proxy)
	for range 3 {
		stranger.do("POST", "/console/login", url.Values{"token": {"guess"}})
	}
	if rec := stranger.do("POST", "/console/login", url.Values{"token": {token}}); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("a login from the throttled address: %d, want 429", rec.Code)
	}
	if rec := stranger.do("GET", "/admin/customers/blocked", nil, "Authorization", "Bearer "+token); rec.Code != http.StatusTooManyRequests {
		t.Errorf("a bearer token from the throttled address: %d, want 429", rec.Code)
	}
	for _, page := range []string{"/console/events", "/console/customers", "/console/overview", "/console/replay?customer_id=c"} {
		if rec := operator.do("GET", page, nil); rec.Code != http.StatusOK {
			t.Errorf("the live session's %s: %d, want 200", page, rec.Code)
		}
	}
}

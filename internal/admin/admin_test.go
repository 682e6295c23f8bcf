package admin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/apidocs/apidocstest"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/metricstest"
	"github.com/hookstream/hookstream/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "admin-test-token-0123456789"

type testBundle struct {
	t    *testing.T
	h    http.Handler
	pool *pgxpool.Pool // nil without a database
	logs *testenv.LogBuffer
}

// setup serves the admin API the way cmd/hookstream mounts it, on the
// router of internal/httpserver; cfg's Token, Logger and Pool are filled in.
func setup(t *testing.T, cfg admin.Config, withDB bool) *testBundle {
	t.Helper()
	tb := &testBundle{t: t, logs: &testenv.LogBuffer{}}
	if withDB {
		pool := testenv.PostgresPool(t)
		tb.pool = pool
	}
	cfg.Token, cfg.Pool, cfg.Instance = token, tb.pool, "test"
	cfg.Logger = slog.New(slog.NewTextHandler(tb.logs, nil))
	log := slog.New(slog.DiscardHandler)
	tb.h = httpserver.New(httpserver.Config{Routes: []func(gin.IRouter){admin.Register(cfg)}, Logger: log}).Handler()
	return tb
}

// holdLock begins a transaction that takes the row locks of lockSQL (a
// SELECT ... FOR UPDATE), for a test to order others behind it; it is
// rolled back at the end unless the test commits it.
func (tb *testBundle) holdLock(lockSQL string) pgx.Tx {
	tb.t.Helper()
	ctx := context.Background()
	tx, err := tb.pool.Begin(ctx)
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Cleanup(func() { _ = tx.Rollback(ctx) }) // a no-op once committed
	if _, err := tx.Exec(ctx, lockSQL); err != nil {
		tb.t.Fatal(err)
	}
	return tx
}

// do sends a request from client (host:port) with the Authorization
// header auth ("" for none).
func (tb *testBundle) do(method, target, client, auth string, header ...string) *httptest.ResponseRecorder {
	tb.t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = client
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	tb.h.ServeHTTP(rec, req)
	return rec
}

func (tb *testBundle) exec(sql string, args ...any) {
	tb.t.Helper()
	if _, err := tb.pool.Exec(context.Background(), sql, args...); err != nil {
		tb.t.Fatal(err)
	}
}

// TestBearerSchemeIsCaseInsensitive: the auth scheme's name is
// case-insensitive (RFC 9110, 11.1), so "bearer" and "BEARER" work like
// "Bearer"; anything else is 401 with WWW-Authenticate.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{AuthFailureBurst: 100}, true)
	for _, auth := range []string{"Bearer " + token, "bearer " + token, "BEARER " + token, "bEaReR  " + token + " "} {
		if rec := tb.do("GET", "/admin/customers/blocked", "192.0.2.1:1", auth); rec.Code != http.StatusOK {
			t.Errorf("%q: %d %s", auth, rec.Code, rec.Body)
		}
	}
	for _, auth := range []string{"", "Basic " + token, "Bearer" + token, "Bearer", "Bearer wrong", "Bearer " + token + "x", token} {
		rec := tb.do("GET", "/admin/customers/blocked", "192.0.2.2:1", auth)
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") != `Bearer realm="hookstream-admin"` {
			t.Errorf("%q: %d %v", auth, rec.Code, rec.Header())
		}
	}
}

// TestFailedAuthenticationsLoggedCountedThrottled: each failure is logged
// and counted; wrong tokens (guesses) spend the client's burst, requests
// without one do not; after the burst the client's address is answered
// 429 with Retry-After, even with the right token and whatever
// X-Forwarded-For it claims, while other addresses are not held up; an
// IPv6 client is throttled by its /64.
func TestFailedAuthenticationsLoggedCountedThrottled(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{AuthFailureBurst: 3, AuthFailureEvery: time.Hour}, true)
	metric := func(reason string) float64 {
		rec := httptest.NewRecorder()
		tb.h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		v, _ := metricstest.Sum(t, rec.Body.String(), "hookstream_admin_auth_failures_total", `reason="`+reason+`"`)
		return v
	}
	wrong0, missing0, throttled0 := metric("wrong"), metric("missing"), metric("throttled")
	const attacker = "198.51.100.7:4242"
	for i, auth := range []string{"Bearer guess1", "", "", "", "Bearer guess2", "Bearer guess3"} {
		if rec := tb.do("GET", "/admin/events", attacker, auth); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, rec.Code)
		}
	}
	for _, xff := range []string{"", "203.0.113.9"} {
		rec := tb.do("GET", "/admin/events", attacker, "Bearer "+token, "X-Forwarded-For", xff)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"too_many_failures"`) {
			t.Errorf("after the burst (X-Forwarded-For %q): %d %v %s", xff, rec.Code, rec.Header(), rec.Body)
		}
	}
	// Requests without a token do not shut anyone out: a burst of them
	// from one address, then the token from that address.
	for i := range 10 {
		if rec := tb.do("GET", "/admin/events", "198.51.100.9:1", ""); rec.Code != http.StatusUnauthorized {
			t.Fatalf("no token %d: %d", i+1, rec.Code)
		}
	}
	if rec := tb.do("GET", "/admin/events", "198.51.100.9:1", "Bearer "+token); rec.Code != http.StatusOK {
		t.Errorf("the token after requests without one, from the same address: %d %s", rec.Code, rec.Body)
	}
	if rec := tb.do("GET", "/admin/events", "198.51.100.8:1", "Bearer "+token); rec.Code != http.StatusOK {
		t.Errorf("another address: %d %s", rec.Code, rec.Body)
	}
	// Counters are process-wide and other tests add to them: at least ours.
	if d := metric("wrong") - wrong0; d < 3 {
		t.Errorf("wrong counted %v times, want 3", d)
	}
	if d := metric("missing") - missing0; d < 13 {
		t.Errorf("missing counted %v times, want 13", d)
	}
	if d := metric("throttled") - throttled0; d < 2 {
		t.Errorf("throttled counted %v times, want 2", d)
	}
	logs := tb.logs.String()
	if n := strings.Count(logs, "authentication failed"); n != 16 || !strings.Contains(logs, "client=198.51.100.7") || strings.Contains(logs, "guess") {
		t.Errorf("want 16 lines naming the client and not the tokens tried; log:\n%s", logs)
	}

	// IPv6: one /64 is one client.
	for i := range 3 {
		tb.do("GET", "/admin/events", "[2001:db8:1:2::"+string(rune('a'+i))+"]:1", "Bearer nope")
	}
	if rec := tb.do("GET", "/admin/events", "[2001:db8:1:2:ffff::1]:1", "Bearer "+token); rec.Code != http.StatusTooManyRequests {
		t.Errorf("another address of the same /64: %d", rec.Code)
	}
	if rec := tb.do("GET", "/admin/events", "[2001:db8:1:3::1]:1", "Bearer "+token); rec.Code != http.StatusOK {
		t.Errorf("another /64: %d", rec.Code)
	}
}

// TestIDsWithSlash: a source's ids may hold "/" (GitHub-style "org/repo",
// paths): percent-encoded as %2F they reach the event, its replay and a
// customer's unpark.
func TestIDsWithSlash(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset, last_error)
VALUES ('gh', 'deliveries/evt/1', 'org/acme', 'DEAD', 1, 0, 10, 'deliver to https://u:pa55word@hooks.example.com/in?token=t0ken: 500'),
       ('gh', 'deliveries/evt/2', 'org/other', 'DEAD', 1, 0, 11, NULL)`)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition)
VALUES ('gh', 'org/acme', 'PARKED', 'deliveries/evt/1', 0)`)
	auth := "Bearer " + token
	const client = "192.0.2.10:1"

	rec := tb.do("GET", "/admin/events/gh/deliveries%2Fevt%2F1", client, auth)
	var ev admin.Event
	if err := json.Unmarshal(rec.Body.Bytes(), &ev); rec.Code != http.StatusOK || err != nil || ev.EventID != "deliveries/evt/1" || ev.CustomerID != "org/acme" {
		t.Fatalf("GET an id with /: %d %s", rec.Code, rec.Body)
	}
	// What an older version stored is shown without the credentials.
	if strings.Contains(ev.LastError, "pa55word") || strings.Contains(ev.LastError, "t0ken") || !strings.Contains(ev.LastError, "hooks.example.com") {
		t.Errorf("last_error shown: %q", ev.LastError)
	}
	if rec := tb.do("POST", "/admin/events/gh/deliveries%2Fevt%2F2/replay", client, auth); rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"deliveries/evt/2"`) {
		t.Errorf("replay an id with /: %d %s", rec.Code, rec.Body)
	}
	if rec := tb.do("POST", "/admin/customers/org%2Facme/unpark?skip_blocker=true", client, auth); rec.Code != http.StatusAccepted || !strings.Contains(rec.Body.String(), `"org/acme"`) {
		t.Errorf("unpark a customer with /: %d %s", rec.Code, rec.Body)
	}
	var state string
	if err := tb.pool.QueryRow(context.Background(), `SELECT state FROM customer_blocks WHERE customer_id = 'org/acme'`).Scan(&state); err != nil || state != "DRAINING" {
		t.Errorf("org/acme after unpark: %q %v", state, err)
	}
	// An unescaped "/" is a path separator, as before: no such route.
	if rec := tb.do("GET", "/admin/events/gh/deliveries/evt/1", client, auth); rec.Code != http.StatusNotFound {
		t.Errorf("unescaped: %d", rec.Code)
	}
}

// TestUnstorableParameters: PostgreSQL's text holds neither NUL nor
// invalid UTF-8, so no id or name hookstream stores has them; a parameter
// that does is a bad request (400 bad_request, as the document declares),
// not a database failure (it was 503 with the driver's message, found by
// schemathesis).
func TestUnstorableParameters(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	v := apidocstest.Load(t)
	auth := "Bearer " + token
	for _, target := range []string{
		"/admin/events?customer_id=cus%00",
		"/admin/events?customer_id=%FF",
		"/admin/events/gen%00eric/evt_1",
		"/admin/events/generic/evt%FF",
		"POST /admin/events/generic/evt%00/replay",
		"POST /admin/customers/cus%00/unpark",
		"POST /admin/customers/cus_1/unpark?source=%C2%9D%00%05",
		"POST /admin/customers/cus_1/unpark?source=%C3",
		"/admin/events?event_type=t%00",
		"/admin/events?source=%FF",
		"/admin/events/gen%00eric/evt_1/body",
		"POST /admin/customers/cus_1/unpark?skip_blocker=true&blocker=b%00",
	} {
		method := "GET"
		if m, rest, ok := strings.Cut(target, " "); ok {
			method, target = m, rest
		}
		rec := tb.do(method, target, "192.0.2.20:1", auth)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"bad_request"`) {
			t.Errorf("%s %s: %d %s", method, target, rec.Code, rec.Body)
		}
		if err := v.Check(httptest.NewRequest(method, target, nil), rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("%s %s: %v", method, target, err)
		}
	}
}

package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/console"
	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/apidocs/apidocstest"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const token = "console-test-admin-token-0123456789"

// clock is the console's session clock, moved by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type testBundle struct {
	t     *testing.T
	h     http.Handler
	pool  *pgxpool.Pool
	clock *clock

	mu    sync.Mutex
	calls []string // the admin API operations the console called
}

// setup serves the admin API and the console on one router, as
// cmd/hookstream mounts them. The console's in-process admin API calls
// go through a check: each request must be an operation of
// schemas/openapi.yaml with the parameters it declares, and each answer
// must match the document, or the test fails.
func setup(t *testing.T, acfg admin.Config) *testBundle {
	t.Helper()
	pool := testenv.PostgresPool(t)
	tb := &testBundle{t: t, pool: pool, clock: &clock{now: time.Now()}}
	acfg.Token, acfg.Pool, acfg.Instance = token, pool, "test"
	acfg.Logger = slog.New(slog.DiscardHandler)
	var router http.Handler
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tb.checkRequest(routable(r))
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, r)
		if err := apidocstest.Load(t).Check(routable(r), rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("the admin API's answer to the console does not match schemas/openapi.yaml: %v", err)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
	srv := httpserver.New(httpserver.Config{Logger: slog.New(slog.DiscardHandler), Routes: []func(gin.IRouter){
		admin.Register(acfg),
		console.Register(console.Config{Token: token, API: api, Now: tb.clock.Now, SessionTTL: time.Hour, Logger: slog.New(slog.DiscardHandler),
			TailDuration: 2 * time.Second}),
	}})
	router = srv.Handler()
	tb.h = router
	return tb
}

// routable is r as kin-openapi's router can match it: the router matches
// the decoded path, where an id's %2F has become a "/" that splits a
// segment; matched on the path as sent, the id stays one segment.
func routable(r *http.Request) *http.Request {
	c := r.Clone(r.Context())
	c.URL.Path, c.URL.RawPath = r.URL.EscapedPath(), ""
	return c
}

// checkRequest fails the test unless r is an operation of the document,
// with the parameters it declares.
func (tb *testBundle) checkRequest(r *http.Request) {
	v := apidocstest.Load(tb.t)
	rt, err := legacy.NewRouter(v.Doc)
	if err != nil {
		tb.t.Fatal(err)
	}
	route, params, err := rt.FindRoute(r)
	if err != nil {
		tb.t.Errorf("the console called %s %s, which schemas/openapi.yaml does not have: %v", r.Method, r.URL, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		tb.t.Errorf("the console's call %s %s does not match schemas/openapi.yaml: %v", r.Method, r.URL, err)
	}
	tb.mu.Lock()
	tb.calls = append(tb.calls, route.Operation.OperationID)
	tb.mu.Unlock()
}

func (tb *testBundle) called() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.calls...)
}

func (tb *testBundle) exec(sql string, args ...any) {
	tb.t.Helper()
	if _, err := tb.pool.Exec(context.Background(), sql, args...); err != nil {
		tb.t.Fatal(err)
	}
}

func (tb *testBundle) scalar(sql string, args ...any) string {
	tb.t.Helper()
	var s string
	if err := tb.pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		tb.t.Fatal(err)
	}
	return s
}

// browser is one client: its address, its cookie and the CSRF token of
// the last page it saw. Its POSTs carry the headers a browser sends with
// a same-origin form.
type browser struct {
	tb     *testBundle
	addr   string
	cookie string
	csrf   string
}

func (tb *testBundle) browser(addr string) *browser { return &browser{tb: tb, addr: addr} }

var csrfInPage = regexpMust(`name="csrf" value="([^"]+)"`)

// do sends a request; header pairs override the defaults ("" removes one).
func (b *browser) do(method, target string, form url.Values, header ...string) *httptest.ResponseRecorder {
	b.tb.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr = b.addr
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", "http://example.com")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if b.cookie != "" {
		req.Header.Set("Cookie", "hookstream_console="+b.cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	rec := httptest.NewRecorder()
	b.tb.h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "hookstream_console" {
			b.cookie = c.Value
		}
	}
	if m := csrfInPage.FindStringSubmatch(rec.Body.String()); m != nil {
		b.csrf = m[1]
	}
	return rec
}

// login logs in with the token and loads the events page (for its CSRF
// token).
func (b *browser) login() {
	b.tb.t.Helper()
	rec := b.do("POST", "/console/login", url.Values{"token": {token}})
	if rec.Code != http.StatusSeeOther || b.cookie == "" {
		b.tb.t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	if rec := b.do("GET", "/console/events", nil); rec.Code != http.StatusOK || b.csrf == "" {
		b.tb.t.Fatalf("events page after login: %d %s", rec.Code, rec.Body)
	}
}

var sessionName = regexp.MustCompile(`console session [0-9a-f]{16}`)

// operator is the name the console gives this browser's session.
func (b *browser) operator() string {
	b.tb.t.Helper()
	name := sessionName.FindString(b.do("GET", "/console/customers", nil).Body.String())
	if name == "" {
		b.tb.t.Fatal("the page does not name the session")
	}
	return name
}

func regexpMust(pattern string) *regexp.Regexp { return regexp.MustCompile(pattern) }

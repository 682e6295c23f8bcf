package admin_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/apidocs/apidocstest"
	"github.com/hookstream/hookstream/internal/httpserver"
)

// get sends an authorized GET and checks the answer against the OpenAPI
// document.
func (tb *testBundle) get(target string) *httptest.ResponseRecorder {
	tb.t.Helper()
	rec := tb.do("GET", target, "192.0.2.30:1", "Bearer "+token)
	if err := apidocstest.Load(tb.t).Check(httptest.NewRequest("GET", target, nil), rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		tb.t.Errorf("GET %s: %v", target, err)
	}
	return rec
}

func (tb *testBundle) ids(target string) ([]string, string) {
	tb.t.Helper()
	rec := tb.get(target)
	if rec.Code != http.StatusOK {
		tb.t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
	}
	var page struct {
		Events []struct {
			Source  string `json:"source"`
			EventID string `json:"event_id"`
		} `json:"events"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		tb.t.Fatal(err)
	}
	var out []string
	for _, e := range page.Events {
		out = append(out, e.Source+"/"+e.EventID)
	}
	return out, page.NextCursor
}

// TestSearchEvents: every filter of GET /admin/events narrows the list,
// together with the others and across pages, newest first; a bad time
// is 400.
func TestSearchEvents(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, event_type, status, updated_at) VALUES
  ('stripe', 'evt_1', 'cus_a', 'invoice.paid',   'PROCESSED', '2026-11-30T10:00:00Z'),
  ('stripe', 'evt_2', 'cus_a', 'invoice.failed', 'DEAD',      '2026-11-30T11:00:00Z'),
  ('stripe', 'evt_3', 'cus_b', 'invoice.paid',   'PROCESSED', '2026-11-30T12:00:00Z'),
  ('github', 'evt_1', 'org/x', 'push',           'PROCESSED', '2026-11-30T13:00:00Z'),
  ('github', 'evt_4', 'org/x', 'push',           'FAILED',    '2026-11-30T14:00:00Z')`)
	for _, c := range []struct {
		query string
		want  string
	}{
		{"", "github/evt_4 github/evt_1 stripe/evt_3 stripe/evt_2 stripe/evt_1"},
		{"source=stripe", "stripe/evt_3 stripe/evt_2 stripe/evt_1"},
		{"event_id=evt_1", "github/evt_1 stripe/evt_1"},
		{"source=github&event_id=evt_1", "github/evt_1"},
		{"event_type=invoice.paid", "stripe/evt_3 stripe/evt_1"},
		{"customer_id=cus_a&status=DEAD", "stripe/evt_2"},
		{"since=2026-11-30T11:00:00Z&until=2026-11-30T13:00:00Z", "stripe/evt_3 stripe/evt_2"},
		{"since=2026-11-30T12:30:00%2B01:00", "github/evt_4 github/evt_1 stripe/evt_3"},
		{"source=nope", ""},
	} {
		got, _ := tb.ids("/admin/events?" + c.query)
		if strings.Join(got, " ") != c.want {
			t.Errorf("?%s: %v, want %s", c.query, got, c.want)
		}
	}
	// Pages keep the filters: two at a time through stripe's three.
	var all []string
	target := "/admin/events?source=stripe&limit=2"
	for range 3 {
		got, next := tb.ids(target)
		all = append(all, got...)
		if next == "" {
			break
		}
		target = "/admin/events?source=stripe&limit=2&cursor=" + url.QueryEscape(next)
	}
	if strings.Join(all, " ") != "stripe/evt_3 stripe/evt_2 stripe/evt_1" {
		t.Errorf("paged: %v", all)
	}
	for _, q := range []string{"since=yesterday", "until=2026-11-30", "status=LOST",
		"since=2026-11-30T10:00:00Z&until=2026-11-30T10:00:00Z", "since=2026-11-30T11:00:00Z&until=2026-11-30T10:00:00Z"} {
		if rec := tb.get("/admin/events?" + q); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"bad_request"`) {
			t.Errorf("?%s: %d %s", q, rec.Code, rec.Body)
		}
	}
}

// TestEventBody: the body of an event whose payload is kept, whole or cut
// at max_bytes (never inside a UTF-8 character), base64 when it is not
// text; 404 naming why when it is not kept or there is no such event.
func TestEventBody(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, payload) VALUES
  ('generic', 'json', 'c', 'DEAD', convert_to('{"a":"é"}', 'UTF8')),
  ('generic', 'bin', 'c', 'PARKED', '\xff00fe'::bytea),
  ('generic', 'done', 'c', 'PROCESSED', NULL)`)
	type body struct {
		Size      int    `json:"size"`
		Truncated bool   `json:"truncated"`
		Encoding  string `json:"encoding"`
		Body      string `json:"body"`
	}
	read := func(target string) body {
		t.Helper()
		rec := tb.get(target)
		var b body
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &b) != nil {
			t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
		return b
	}
	if b := read("/admin/events/generic/json/body"); b != (body{Size: 10, Encoding: "utf-8", Body: `{"a":"é"}`}) {
		t.Errorf("whole: %+v", b)
	}
	// é is two bytes, at offsets 6 and 7: a cut after 7 bytes drops its first half.
	if b := read("/admin/events/generic/json/body?max_bytes=7"); b != (body{Size: 10, Truncated: true, Encoding: "utf-8", Body: `{"a":"`}) {
		t.Errorf("cut: %+v", b)
	}
	if b := read("/admin/events/generic/bin/body"); b.Encoding != "base64" || b.Body != base64.StdEncoding.EncodeToString([]byte{0xff, 0, 0xfe}) {
		t.Errorf("binary: %+v", b)
	}
	for target, want := range map[string]string{
		"/admin/events/generic/done/body":             "PROCESSED event is not kept",
		"/admin/events/generic/nope/body":             "no such event",
		"/admin/events/generic/json/body?max_bytes=0": "max_bytes must be",
	} {
		if rec := tb.get(target); !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %s, want %q", target, rec.Code, rec.Body, want)
		}
	}
}

// A search the database gives up on half-way is a 503, not a 200 with
// the rows read so far: pgx reports an error that comes during the rows
// only after them. The error is one row that raises when it is read: a
// view named events, ahead of the table on the pool's search_path, reads
// the table through a function that raises on one row, so the cut comes
// at that row every run (a statement timeout depended on the machine's
// speed, and a 50 ms one stopped cutting when the listing got faster).
func TestSearchFailingMidwayIs503(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{}, true)
	tb.exec(`INSERT INTO events (source, event_id, customer_id, status, event_type, updated_at)
SELECT 'gh', 'e' || i, 'c1', 'PROCESSED', 'ping', now() - make_interval(secs => 20 - i)
FROM generate_series(1, 20) AS i`)
	tb.exec(`CREATE FUNCTION cut_off(id text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF id = 'e15' THEN RAISE EXCEPTION 'cut off half-way'; END IF;
  RETURN true;
END $$`)
	tb.exec(`CREATE SCHEMA cut`)
	tb.exec(`CREATE VIEW cut.events AS SELECT * FROM public.events WHERE cut_off(event_id)`)
	const search = "/admin/events?limit=100&event_type=ping"
	if rec := tb.get(search); rec.Code != http.StatusOK || strings.Count(rec.Body.String(), `"event_id"`) != 20 {
		t.Fatalf("the search on the table: %d %s, want 200 with 20 events", rec.Code, rec.Body.String())
	}
	cfg := tb.pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["search_path"] = "cut, public"
	cutPool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cutPool.Close()
	h := httpserver.New(httpserver.Config{Routes: []func(gin.IRouter){admin.Register(admin.Config{Token: token, Pool: cutPool, Instance: "test",
		Logger: slog.New(slog.DiscardHandler)})}, Logger: slog.New(slog.DiscardHandler)}).Handler()
	req := httptest.NewRequest("GET", search, nil)
	req.RemoteAddr = "192.0.2.31:1"
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a search cut off by the database: %d %s, want 503", rec.Code, rec.Body.String())
	}
}

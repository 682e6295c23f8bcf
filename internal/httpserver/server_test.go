package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	var dbDown bool
	s := New(Config{Logger: slog.New(slog.DiscardHandler), Ready: []Check{
		{Name: "kafka", Check: func(context.Context) error { return nil }},
		{Name: "postgres", Check: func(context.Context) error {
			if dbDown {
				return errors.New("connection refused")
			}
			return nil
		}},
	}})
	get := func(path string) (int, http.Header, map[string]string) {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var body map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, rec.Header(), body
	}
	if code, _, body := get("/healthz"); code != 200 || body["status"] != "ok" {
		t.Errorf("healthz: %d %v", code, body)
	}
	if code, _, body := get("/readyz"); code != 200 || body["kafka"] != "ok" || body["postgres"] != "ok" {
		t.Errorf("readyz: %d %v", code, body)
	}
	dbDown = true
	code, h, body := get("/readyz")
	if code != 503 || body["kafka"] != "ok" || body["postgres"] != "unavailable" || h.Get("Retry-After") == "" {
		t.Errorf("readyz with the database down: %d %v %v", code, body, h)
	}
	if code, _, body := get("/nope"); code != 404 || body == nil {
		t.Errorf("unknown route: %d", code)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Errorf("metrics: %d", rec.Code)
	}
}

// TestReadinessDetail: the public /readyz names the failing dependency but
// not its error, which a listener for operators (ReadyDetail) shows,
// redacted, and the log records once per change; HEAD works on /healthz
// and /readyz; NoMetrics leaves /metrics out.
func TestReadinessDetail(t *testing.T) {
	t.Parallel()
	const raw = "failed to connect to `user=hookstream`: dial tcp 10.1.2.3:5432: connection refused (postgres://hookstream:pa55word@10.1.2.3:5432/db)"
	var down atomic.Bool
	check := []Check{{Name: "postgres", Check: func(context.Context) error {
		if down.Load() {
			return errors.New(raw)
		}
		return nil
	}}}
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	public := New(Config{Ready: check, Logger: logger, NoMetrics: true})
	admin := New(Config{Ready: check, Logger: logger, ReadyDetail: true})
	do := func(s *Server, method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	// Over a real connection: net/http drops a HEAD answer's body.
	hs := httptest.NewServer(public.Handler())
	t.Cleanup(hs.Close)
	for _, path := range []string{"/healthz", "/readyz"} {
		req, _ := http.NewRequest(http.MethodHead, hs.URL+path, nil)
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != 0 || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("HEAD %s: %d, %d bytes of body, %v", path, resp.StatusCode, n, resp.Header)
		}
	}
	down.Store(true)
	if rec := do(public, http.MethodHead, "/readyz"); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("HEAD /readyz, database down: %d %v", rec.Code, rec.Header())
	}
	rec := do(public, http.MethodGet, "/readyz")
	if rec.Code != http.StatusServiceUnavailable || strings.TrimSpace(rec.Body.String()) != `{"postgres":"unavailable"}` {
		t.Errorf("public /readyz: %d %s", rec.Code, rec.Body)
	}
	rec = do(admin, http.MethodGet, "/readyz")
	var body map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body["postgres"], "connection refused") || strings.Contains(body["postgres"], "pa55word") {
		t.Errorf("admin /readyz: %d %s", rec.Code, rec.Body)
	}
	do(public, http.MethodGet, "/readyz")
	down.Store(false)
	do(public, http.MethodGet, "/readyz")
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	if n := strings.Count(text, "readiness check failed"); n != 2 || !strings.Contains(text, "connection refused") || strings.Contains(text, "pa55word") {
		t.Errorf("want one failure line per server, the error redacted; log:\n%s", text)
	}
	if !strings.Contains(text, "readiness check passes again") {
		t.Errorf("the recovery is not logged:\n%s", text)
	}
	if rec := do(public, http.MethodGet, "/metrics"); rec.Code != http.StatusNotFound {
		t.Errorf("/metrics with NoMetrics: %d", rec.Code)
	}
	if rec := do(admin, http.MethodGet, "/metrics"); rec.Code != http.StatusOK {
		t.Errorf("/metrics: %d", rec.Code)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

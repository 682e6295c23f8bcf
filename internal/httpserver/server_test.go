package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	var dbDown bool
	s := New(Config{Ready: []Check{
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
	if code != 503 || body["kafka"] != "ok" || body["postgres"] != "connection refused" || h.Get("Retry-After") == "" {
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

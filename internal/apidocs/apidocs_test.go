package apidocs_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/apidocs"
	"github.com/hookstream/hookstream/internal/apidocs/apidocstest"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/schemas"
)

// nopProducer satisfies ingest.Producer; these tests never produce.
type nopProducer struct{}

func (nopProducer) Produce(context.Context, *kgo.Record, func(*kgo.Record, error)) {}

func (nopProducer) TryProduce(context.Context, *kgo.Record, func(*kgo.Record, error)) {}

// server builds the router every role with an HTTP server runs: the
// httpserver's own routes, the receiver's and the admin API's (with a
// token, so that it is mounted), the way cmd/hookstream wires them.
func server(t *testing.T) *httpserver.Server {
	t.Helper()
	schema, err := fs.ReadFile(schemas.JSON(), "generic.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := ingest.New(ingest.Config{Sources: []sources.Source{sources.Generic([]string{"apidocs-test-secret"}, schema)}, Producer: nopProducer{}})
	if err != nil {
		t.Fatal(err)
	}
	return httpserver.New(httpserver.Config{Routes: []func(gin.IRouter){rcv.Register, admin.Register(admin.Config{Token: "t"})}})
}

var ginParam = regexp.MustCompile(`[:*]([A-Za-z_][A-Za-z0-9_]*)`)

// TestRouteParity fails when a route the binary registers is missing from
// schemas/openapi.yaml, or the document names a path or method that no
// route serves.
func TestRouteParity(t *testing.T) {
	t.Parallel()
	engine, ok := server(t).Handler().(*gin.Engine)
	if !ok {
		t.Fatal("the server's handler is not a *gin.Engine")
	}
	registered := map[string]bool{}
	for _, r := range engine.Routes() {
		registered[r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}")] = true
	}

	v := apidocstest.Load(t)
	documented := map[string]bool{}
	for p, item := range v.Doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+p] = true
		}
	}
	for _, r := range sortedKeys(registered) {
		if !documented[r] {
			t.Errorf("route %s is registered but not in schemas/openapi.yaml", r)
		}
	}
	for _, d := range sortedKeys(documented) {
		if !registered[d] {
			t.Errorf("schemas/openapi.yaml documents %s, which no route serves", d)
		}
	}
	if len(registered) < 12 {
		t.Errorf("only %d routes registered: %v", len(registered), sortedKeys(registered))
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestServed: /openapi.json is the document, /docs a page that loads only
// assets this server serves, and every response matches the document.
func TestServed(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(server(t).Handler())
	t.Cleanup(hs.Close)
	client := apidocstest.Client(t)
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := client.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}

	resp, body := get("/openapi.json")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/openapi.json: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	want, err := apidocs.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != string(want) {
		t.Error("/openapi.json is not apidocs.JSON()")
	}
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("/openapi.json: openapi %q, %v", doc.OpenAPI, err)
	}
	// The audit record's schema is the one in schemas/json, inlined.
	var auditFile map[string]any
	raw, err := fs.ReadFile(schemas.JSON(), "audit-record.schema.json")
	if err != nil || json.Unmarshal(raw, &auditFile) != nil {
		t.Fatal(err)
	}
	delete(auditFile, "$schema")
	delete(auditFile, "$id")
	a, _ := json.Marshal(auditFile)
	b, _ := json.Marshal(doc.Components.Schemas["AuditRecord"])
	if string(a) != string(b) {
		t.Errorf("components/schemas/AuditRecord is not audit-record.schema.json:\n%s\n%s", b, a)
	}

	resp, body = get("/docs")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/docs: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	page := string(body)
	if strings.Contains(page, "//") {
		t.Errorf("/docs names another host or an absolute URL:\n%s", page)
	}
	// Redoc 3's bundle uses import.meta: a classic script fails to parse.
	if !strings.Contains(page, `<script type="module" src="docs/assets/redoc.standalone.js">`) {
		t.Errorf("/docs does not load the Redoc bundle as a module:\n%s", page)
	}
	refs := regexp.MustCompile(`(?:src|href|spec-url)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 2 {
		t.Fatalf("/docs references %v, want the document and the script", refs)
	}
	for _, m := range refs {
		// Relative to /docs, so relative to the root.
		resp, asset := get("/" + m[1])
		if resp.StatusCode != 200 || len(asset) == 0 {
			t.Errorf("%s (referenced by /docs): %d", m[1], resp.StatusCode)
		}
		if strings.HasSuffix(m[1], ".js") && resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", m[1], resp.Header.Get("Content-Type"))
		}
	}
	if resp, _ := get("/docs/assets/nope.js"); resp.StatusCode != 404 {
		t.Errorf("unknown asset: %d", resp.StatusCode)
	}
	// The router's own 404 and 405 match the error body too.
	if resp, _ := get("/nope"); resp.StatusCode != 404 {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
	if resp, _ := get("/webhooks/generic"); resp.StatusCode != 405 {
		t.Errorf("GET on the webhook route: %d", resp.StatusCode)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, _ := get(p); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

// TestValidatorRejects: the validator the integration tests use does fail
// a response that breaks the document.
func TestValidatorRejects(t *testing.T) {
	t.Parallel()
	v := apidocstest.Load(t)
	req := httptest.NewRequest(http.MethodPost, "/webhooks/generic", nil)
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"r1"}}
	for _, c := range []struct {
		name   string
		status int
		header http.Header
		body   string
		ok     bool
	}{
		{"accepted", 202, h, `{"event_id":"e","status":"accepted"}`, true},
		{"accepted again", 202, h, `{"event_id":"e","status":"accepted","retry":true}`, true},
		{"wrong status word", 202, h, `{"event_id":"e","status":"queued"}`, false},
		{"extra field", 202, h, `{"event_id":"e","status":"accepted","x":1}`, false},
		{"undeclared status", 201, h, `{"event_id":"e","status":"accepted"}`, false},
		{"no request id", 202, http.Header{"Content-Type": {"application/json"}}, `{"event_id":"e","status":"accepted"}`, false},
		{"error code of another status", 401, h, `{"error":{"code":"rate_limited","message":"m"}}`, false},
		{"401 with details", 401, h, `{"error":{"code":"signature_invalid","message":"m","details":["x"]}}`, false},
		{"429 without Retry-After", 429, h, `{"error":{"code":"rate_limited","message":"m"}}`, false},
		{"429", 429, merge(h, "Retry-After", "3"), `{"error":{"code":"rate_limited","message":"m"}}`, true},
		{"503", 503, merge(h, "Retry-After", "5"), `{"error":{"code":"unavailable","message":"m"}}`, true},
	} {
		err := v.Check(req, c.status, c.header, []byte(c.body))
		if (err == nil) != c.ok {
			t.Errorf("%s: error %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if err := v.Check(httptest.NewRequest(http.MethodDelete, "/healthz", nil), 200, h, []byte(`{}`)); err == nil {
		t.Error("a 200 to an undocumented method passed")
	}
}

func merge(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

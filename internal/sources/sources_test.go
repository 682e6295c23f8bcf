package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseFullExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "shop.schema.json"), []byte(`{"type":"object"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	y := `
sources:
  - name: shop
    scheme: standard-webhooks
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "env:SHOP_SECRET"]
    tolerance: 2m
    customer_id: {pointer: /data/customer_id}
    event_type: {pointer: /type}
    schema: shop.schema.json
    max_body_bytes: 2048
    rate_limit: {per_second: 100}
    duplicate_status: 200
    destination: {url: "http://127.0.0.1:9000/hooks"}
    retry: {max_attempts: 3, initial_backoff: 2s}
  - name: gh
    scheme: github
    secrets: [s3cret]
    customer_id: {header: X-Customer}
`
	srcs, err := Parse([]byte(y), dir, env(map[string]string{"SHOP_SECRET": "whsec_c2Vjb25k"}))
	if err != nil {
		t.Fatal(err)
	}
	s := srcs[0]
	if s.Secrets[1] != "whsec_c2Vjb25k" {
		t.Errorf("env secret not resolved: %q", s.Secrets[1])
	}
	if s.EventID.Header != "webhook-id" {
		t.Errorf("natural event id %+v, want header webhook-id", s.EventID)
	}
	if string(s.SchemaJSON) != `{"type":"object"}` {
		t.Errorf("schema not loaded relative to the file: %q", s.SchemaJSON)
	}
	if s.Tolerance != 2*time.Minute || s.RateLimit.Burst != 100 || s.Destination.Timeout != DefaultDestTimeout ||
		s.Retry.MaxAttempts != 3 || s.Retry.InitialBackoff != 2*time.Second || s.Retry.MaxBackoff != DefaultMaxBackoff {
		t.Errorf("defaults/values wrong: %+v", s)
	}
	g := srcs[1]
	if g.EventID.Header != "X-GitHub-Delivery" || g.MaxBodyBytes != DefaultMaxBodyBytes || g.DuplicateStatus != 409 || g.Tolerance != DefaultTolerance {
		t.Errorf("github defaults: %+v", g)
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	t.Parallel()
	base := "sources:\n  - name: a\n    scheme: github\n    secrets: [x]\n    customer_id: {header: X-C}\n"
	cases := []struct{ yaml, want string }{
		{"sources: []\n", "at least one source"},
		{"", "at least one source"},
		{"sources:\n  - name: a\n    schem: github\n", "field schem not found"},
		{"sources:\n  - name: Bad Name\n    scheme: none\n", "sources[0] (Bad Name).name"},
		{"sources:\n  - name: a\n    customer_id: {header: X}\n    event_id: {header: X}\n", "sources[0] (a).scheme: required"},
		{"sources:\n  - name: a\n    scheme: rot13\n    secrets: [x]\n", "sources[0] (a).scheme"},
		{"sources:\n  - name: a\n    scheme: github\n    customer_id: {header: X}\n", "sources[0] (a).scheme"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [\"env:NOPE\"]\n", "sources[0] (a).secrets[0]: environment variable NOPE"},
		{"sources:\n  - name: a\n    scheme: hmac-sha256\n    secrets: [x]\n    customer_id: {header: X}\n", "sources[0] (a).event_id: required"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [x]\n", "sources[0] (a).customer_id: required"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [x]\n    customer_id: {pointer: data}\n", "customer_id: pointer"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [x]\n    customer_id: {pointer: /a, header: X}\n", "not both"},
		{base + "    rate_limit: {per_second: 0}\n", "sources[0] (a).rate_limit.per_second"},
		{base + "    duplicate_status: 201\n", "sources[0] (a).duplicate_status"},
		{base + "    destination: {url: \"ftp://x\"}\n", "sources[0] (a).destination.url"},
		{base + "    max_body_bytes: -1\n", "sources[0] (a).max_body_bytes"},
		{base + "    retry: {max_attempts: -2}\n", "sources[0] (a).retry.max_attempts"},
		{base + "    retry: {initial_backoff: 10s, max_backoff: 1s}\n", "sources[0] (a).retry.max_backoff"},
		{base + "    tolerance: soon\n", "line 6: cannot unmarshal !!str `soon` into time.Duration"},
		{base + "    schema: /does/not/exist.json\n", "sources[0] (a).schema"},
		{base + "  - name: a\n    scheme: none\n    event_id: {header: X}\n    customer_id: {header: X}\n", "sources[1] (a).name: duplicate of sources[0]"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml), t.TempDir(), env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("yaml:\n%s\nerror %v, want it to contain %q", c.yaml, err, c.want)
		}
	}
}

func TestGenericIsValid(t *testing.T) {
	t.Parallel()
	g := Generic([]string{"s"}, []byte(`{}`))
	if err := g.Validate(func(f string) string { return f }); err != nil {
		t.Fatal(err)
	}
	if g.EventID.Pointer != "/event_id" || g.CustomerID.Pointer != "/customer_id" || g.SignatureHeader != "X-Signature" {
		t.Errorf("%+v", g)
	}
}

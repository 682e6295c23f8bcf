package sources

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
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
    secrets: [gh-s3cret-of-16-bytes]
    customer_id: {header: X-Customer}
`
	srcs, err := Parse([]byte(y), dir, env(map[string]string{"SHOP_SECRET": "whsec_c2Vjb25kIHNoYXJlZCBrZXkgMTY="}))
	if err != nil {
		t.Fatal(err)
	}
	s := srcs[0]
	if s.Secrets[1] != "whsec_c2Vjb25kIHNoYXJlZCBrZXkgMTY=" {
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

// longSecret is long enough for every scheme but standard-webhooks.
const longSecret = "a-secret-of-more-than-16-bytes"

func TestParseErrorsNameTheField(t *testing.T) {
	t.Parallel()
	base := "sources:\n  - name: a\n    scheme: github\n    secrets: [" + longSecret + "]\n    customer_id: {header: X-C}\n"
	cases := []struct{ yaml, want string }{
		{"sources: []\n", "at least one source"},
		{"", "at least one source"},
		{"sources:\n  - name: a\n    schem: github\n", "field schem not found"},
		{"sources:\n  - name: Bad Name\n    scheme: none\n", "sources[0] (Bad Name).name"},
		{"sources:\n  - name: a\n    customer_id: {header: X}\n    event_id: {header: X}\n", "sources[0] (a).scheme: required"},
		{"sources:\n  - name: a\n    scheme: rot13\n    secrets: [" + longSecret + "]\n", "sources[0] (a).scheme"},
		{"sources:\n  - name: a\n    scheme: github\n    customer_id: {header: X}\n", "sources[0] (a).scheme"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [\"env:NOPE\"]\n", "sources[0] (a).secrets[0]: environment variable NOPE"},
		{"sources:\n  - name: a\n    scheme: hmac-sha256\n    secrets: [" + longSecret + "]\n    customer_id: {header: X}\n", "sources[0] (a).event_id: required"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [" + longSecret + "]\n", "sources[0] (a).customer_id: required"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [" + longSecret + "]\n    customer_id: {pointer: data}\n", "customer_id: pointer"},
		{"sources:\n  - name: a\n    scheme: github\n    secrets: [" + longSecret + "]\n    customer_id: {pointer: /a, header: X}\n", "not both"},
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
	g := Generic([]string{longSecret}, []byte(`{}`))
	if err := g.Validate(func(f string) string { return f }); err != nil {
		t.Fatal(err)
	}
	if g.EventID.Pointer != "/event_id" || g.CustomerID.Pointer != "/customer_id" || g.SignatureHeader != "X-Signature" {
		t.Errorf("%+v", g)
	}
}

// TestConfigurationBounds: scheme none with secrets, a tolerance over an
// hour and a key shorter than 16 bytes are refused, naming the field and
// never the secret; allow_short_secret lets a short key through.
func TestConfigurationBounds(t *testing.T) {
	t.Parallel()
	src := func(scheme, secret, extra string) string {
		return "sources:\n  - name: a\n    scheme: " + scheme + "\n    secrets: [\"" + secret + "\"]\n" +
			"    event_id: {header: X-Id}\n    customer_id: {header: X-C}\n" + extra
	}
	b64 := func(n int) string {
		return "whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", n)))
	}
	refused := []struct{ name, yaml, want, secret string }{
		{"none with secrets", src("none", longSecret, ""), "sources[0] (a).secrets: scheme none verifies nothing", ""},
		{"tolerance over an hour", src("stripe", "whsec_"+longSecret, "    tolerance: 61m\n"), "sources[0] (a).tolerance: 1h1m0s is more than 1h0m0s", ""},
		{"short github", src("github", "fifteen-bytes!!", ""), "sources[0] (a).secrets[0]: a key of 15 bytes is shorter than 16", "fifteen-bytes!!"},
		{"short shopify", src("shopify", "shop", ""), "secrets[0]: a key of 4 bytes", "shop"},
		{"short hmac", src("hmac-sha256", "hm", ""), "secrets[0]: a key of 2 bytes", "hm"},
		// Stripe's whsec_ prefix is public: it does not count.
		{"short stripe", src("stripe", "whsec_0123456789abcde", ""), "secrets[0]: a key of 15 bytes", "whsec_0123456789abcde"},
		// A Standard Webhooks key is the base64 it carries, decoded.
		{"short standard-webhooks", src("standard-webhooks", b64(15), ""), "secrets[0]: a key of 15 bytes", b64(15)},
	}
	for _, c := range refused {
		_, err := Parse([]byte(c.yaml), t.TempDir(), env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		} else if c.secret != "" && strings.Contains(err.Error(), c.secret) {
			t.Errorf("%s: the error shows the secret: %v", c.name, err)
		}
	}
	accepted := []struct{ name, yaml string }{
		{"none without secrets", "sources:\n  - name: a\n    scheme: none\n    event_id: {header: X-Id}\n    customer_id: {header: X-C}\n"},
		{"tolerance of an hour", src("stripe", "whsec_"+longSecret, "    tolerance: 1h\n")},
		{"16-byte github", src("github", "sixteen-bytes-ok", "")},
		{"16-byte standard-webhooks", src("standard-webhooks", b64(16), "")},
		{"short, allowed", src("shopify", "shop", "    allow_short_secret: true\n")},
	}
	for _, c := range accepted {
		if _, err := Parse([]byte(c.yaml), t.TempDir(), env(nil)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestDocumentedSourcesLoad: the sources the repository shows — every
// sources block of the README and sources.example.yaml — load as they are
// (with their env: secrets set to real-length values).
func TestDocumentedSourcesLoad(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	lookup := func(name string) (string, bool) {
		if strings.Contains(name, "STRIPE") {
			return "whsec_" + strings.Repeat("s", 32), true
		}
		return strings.Repeat("x", 32), true
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The README's example names a schema next to the sources file.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "schemas", "json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "schemas", "json", "shop.schema.json"), []byte(`{"type":"object"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(sources:\n.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("no sources block in the README")
	}
	for i, b := range blocks {
		if _, err := Parse([]byte(b[1]), dir, lookup); err != nil {
			t.Errorf("README sources block %d: %v", i, err)
		}
	}
	example, err := os.ReadFile(filepath.Join(root, "sources.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(example, root, lookup); err != nil {
		t.Errorf("sources.example.yaml: %v", err)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/testenv"
)

// serveProcess is a `hookstream serve` of a test: its receiver's and
// admin listener's base URLs, and the admin token.
type serveProcess struct {
	public, admin, token string
}

// startServe starts `hookstream serve` with an admin listener, the
// environment's variables and env, and waits until both listeners are
// ready.
func startServe(ctx context.Context, t *testing.T, env ...string) serveProcess {
	t.Helper()
	broker := testenv.Kafka(t)
	dbURL := testenv.Postgres(t)
	testTopics(ctx, t, broker, 1)
	var addrs [2]string
	for i := range addrs {
		port, err := devstack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	p := serveProcess{public: "http://" + addrs[0], admin: "http://" + addrs[1], token: "admin-listener-token-0123456789"}
	srcFile := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(srcFile, []byte("sources:\n  - name: generic\n    scheme: hmac-sha256\n    secrets: [admin-listener-secret]\n    event_id: {pointer: /event_id}\n    customer_id: {pointer: /customer_id}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--http-addr", addrs[0], "--sources", srcFile, "--log-level", "warn")
	cmd.Env = append(append(os.Environ(), "HOOKSTREAM_KAFKA_BROKERS="+strings.Join(broker, ","), "HOOKSTREAM_DATABASE_URL="+dbURL,
		"HOOKSTREAM_ADMIN_ADDR="+addrs[1], "HOOKSTREAM_ADMIN_TOKEN="+p.token), env...)
	cmd.Stderr = &testLog{t: t, prefix: "serve"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for _, base := range []string{p.public, p.admin} {
		for {
			if code, _ := p.do(ctx, "GET", base+"/readyz", nil); code == http.StatusOK {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never became ready", base)
			}
			time.Sleep(50 * time.Millisecond) // polling for readiness
		}
	}
	return p
}

// do sends a request with the admin token and header.
func (p serveProcess) do(ctx context.Context, method, url string, header http.Header) (int, string) {
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	maps.Copy(req.Header, header)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeAdminListener: with HOOKSTREAM_ADMIN_ADDR (--admin-addr) the
// admin API, the console and /metrics are served on that listener only, the receiver's
// listener keeps the webhooks, /healthz and /readyz, and both answer HEAD
// on /healthz and /readyz.
func TestServeAdminListener(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startServe(ctx, t)
	public, adminAddr := p.public, p.admin
	want := []struct {
		method, url string
		status      int
		body        string
	}{
		{"GET", adminAddr + "/admin/customers/blocked", 200, "[]"},
		{"GET", adminAddr + "/metrics", 200, "hookstream_admin_auth_failures_total"},
		{"GET", public + "/admin/customers/blocked", 404, "not_found"},
		{"GET", public + "/metrics", 404, "not_found"},
		{"GET", adminAddr + "/console/login", 200, "Admin token"},
		{"GET", public + "/console/login", 404, "not_found"},
		{"POST", public + "/webhooks/generic", 415, "unsupported_media_type"},
		{"HEAD", public + "/healthz", 200, ""},
		{"HEAD", public + "/readyz", 200, ""},
		{"HEAD", adminAddr + "/readyz", 200, ""},
	}
	for _, w := range want {
		code, body := p.do(ctx, w.method, w.url, nil)
		if code != w.status || !strings.Contains(body, w.body) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", w.method, w.url, code, body, w.status, w.body)
		}
	}
}

// TestServeTrustedProxies: behind a proxy named by --trusted-proxies
// (HOOKSTREAM_TRUSTED_PROXIES), the pre-auth budget is the forwarded
// client's: a client that spent its failures is refused (429
// address_limited) while another client behind the same proxy is still
// heard. Without the setting every client shared the proxy's budget.
func TestServeTrustedProxies(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := startServe(ctx, t, "HOOKSTREAM_TRUSTED_PROXIES=10.0.0.0/8, 127.0.0.1")
	from := func(client string) (int, string) {
		h := http.Header{"X-Forwarded-For": {client}, "Content-Type": {"application/json"}, "X-Signature": {"sha256=00"}}
		return p.do(ctx, "POST", p.public+"/webhooks/generic", h)
	}
	limited := false
	for range 100 {
		if code, body := from("203.0.113.1"); code == http.StatusTooManyRequests && strings.Contains(body, "address_limited") {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("100 failed requests from 203.0.113.1 were never refused with 429 address_limited")
	}
	if code, body := from("203.0.113.2"); code == http.StatusTooManyRequests {
		t.Errorf("another client behind the proxy: %d %.200s, want its own budget", code, body)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
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

// TestServeAdminListener: with HOOKSTREAM_ADMIN_ADDR (--admin-addr) the
// admin API and /metrics are served on that listener only, the receiver's
// listener keeps the webhooks, /healthz and /readyz, and both answer HEAD
// on /healthz and /readyz.
func TestServeAdminListener(t *testing.T) {
	t.Parallel()
	broker := testenv.Kafka(t)
	dbURL := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testTopics(ctx, t, broker, 1)
	var addrs [2]string
	for i := range addrs {
		port, err := devstack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	public, adminAddr := "http://"+addrs[0], "http://"+addrs[1]
	srcFile := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(srcFile, []byte("sources:\n  - name: generic\n    scheme: hmac-sha256\n    secrets: [admin-listener-secret]\n    event_id: {pointer: /event_id}\n    customer_id: {pointer: /customer_id}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const token = "admin-listener-token-0123456789"
	cmd := exec.Command(binary, "serve", "--http-addr", addrs[0], "--sources", srcFile, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "HOOKSTREAM_KAFKA_BROKERS="+strings.Join(broker, ","), "HOOKSTREAM_DATABASE_URL="+dbURL,
		"HOOKSTREAM_ADMIN_ADDR="+addrs[1], "HOOKSTREAM_ADMIN_TOKEN="+token)
	cmd.Stderr = &testLog{t: t, prefix: "serve"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	do := func(method, url string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, base := range []string{public, adminAddr} {
		for {
			if code, _ := do("GET", base+"/readyz"); code == http.StatusOK {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never became ready", base)
			}
			time.Sleep(50 * time.Millisecond) // polling for readiness
		}
	}
	want := []struct {
		method, url string
		status      int
		body        string
	}{
		{"GET", adminAddr + "/admin/customers/blocked", 200, "[]"},
		{"GET", adminAddr + "/metrics", 200, "hookstream_admin_auth_failures_total"},
		{"GET", public + "/admin/customers/blocked", 404, "not_found"},
		{"GET", public + "/metrics", 404, "not_found"},
		{"POST", public + "/webhooks/generic", 415, "unsupported_media_type"},
		{"HEAD", public + "/healthz", 200, ""},
		{"HEAD", public + "/readyz", 200, ""},
		{"HEAD", adminAddr + "/readyz", 200, ""},
	}
	for _, w := range want {
		code, body := do(w.method, w.url)
		if code != w.status || !strings.Contains(body, w.body) {
			t.Errorf("%s %s: %d %.200s, want %d with %q", w.method, w.url, code, body, w.status, w.body)
		}
	}
}

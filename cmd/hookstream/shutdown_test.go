package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestServeDrainsOnSIGTERM: SIGTERM under load. The receiver stops taking
// new connections, answers what it took, exits 0 within its grace period,
// and every event it answered 202 is in Kafka.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t)
	dbURL := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	testTopics(ctx, t, broker.Addrs(), 3)
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srcFile := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(srcFile, []byte("sources:\n  - name: generic\n    scheme: hmac-sha256\n    secrets: [shutdown-s3cret-key]\n    event_id: {pointer: /event_id}\n    customer_id: {pointer: /customer_id}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--http-addr", addr, "--sources", srcFile, "--shutdown-grace", "20s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "HOOKSTREAM_KAFKA_BROKERS="+broker.Addrs()[0], "HOOKSTREAM_DATABASE_URL="+dbURL)
	cmd.Stderr = &testLog{t: t, prefix: "serve"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	for {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("serve never became ready")
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness
	}

	var mu sync.Mutex
	accepted := map[string]bool{}
	statuses := map[int]int{}
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	stop := make(chan struct{})
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				body := fmt.Sprintf(`{"event_id":%q,"customer_id":"c%d"}`, id, w)
				m := hmac.New(sha256.New, []byte("shutdown-s3cret-key"))
				m.Write([]byte(body))
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/generic", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Signature", hex.EncodeToString(m.Sum(nil)))
				resp, err := client.Do(req)
				if err != nil {
					return // the listener closed: a provider would retry
				}
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				if resp.StatusCode == http.StatusAccepted {
					accepted[id] = true
				}
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := len(accepted)
		mu.Unlock()
		if n >= 300 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("load did not start")
		}
		time.Sleep(10 * time.Millisecond) // polling for a point in the load
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve exited with %v after SIGTERM", err)
	}
	if d := time.Since(sent); d > 20*time.Second {
		t.Errorf("exit took %s, beyond the 20s grace", d)
	}
	close(stop)
	wg.Wait()
	for code, n := range statuses {
		if code != http.StatusAccepted {
			t.Errorf("%d answers with status %d during shutdown", n, code)
		}
	}

	// Every 202 is in the events topic.
	in := map[string]bool{}
	kc, err := kgo.NewClient(kgo.SeedBrokers(broker.Addrs()...), kgo.ConsumeTopics(wire.DefaultEventsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	for len(in) < len(accepted) && ctx.Err() == nil {
		kc.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == wire.HeaderEventID {
					in[string(h.Value)] = true
				}
			}
		})
	}
	for id := range accepted {
		if !in[id] {
			t.Errorf("event %s was answered 202 but is not in Kafka", id)
		}
	}
	t.Logf("%d accepted before and during shutdown", len(accepted))
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/testenv"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hookstream-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "hookstream")
	if out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	testenv.Main(m, func() { _ = os.RemoveAll(dir) })
}

// devProcess is a running `hookstream dev`.
type devProcess struct {
	cmd    *exec.Cmd
	url    string
	secret string
	stdout *bytes.Buffer
	stderr *bytes.Buffer
	done   chan error
	exited chan struct{} // closed once the process has been waited for
}

var (
	urlRE    = regexp.MustCompile(`hookstream dev is running at (http://\S+)`)
	secretRE = regexp.MustCompile(`Source generic, secret (\S+)`)
)

func startDev(t *testing.T, dataDir string, kafkaPort int) *devProcess {
	t.Helper()
	return startDevWith(t, []string{"--data-dir", dataDir, "--kafka-listen", fmt.Sprintf("127.0.0.1:%d", kafkaPort), "--partitions", "3"},
		[]string{"HOOKSTREAM_KAFKA_BROKERS=", "HOOKSTREAM_DATABASE_URL=", "HOOKSTREAM_GENERIC_SECRET="})
}

// startDevWith runs `hookstream dev` on a free HTTP port with more flags
// and environment, and waits until it is ready.
func startDevWith(t *testing.T, args, env []string) *devProcess {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"dev", "--http-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &devProcess{cmd: cmd, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, done: make(chan error, 1), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		signaled := false
		for sc.Scan() {
			line := sc.Text()
			p.stdout.WriteString(line + "\n")
			if m := urlRE.FindStringSubmatch(line); m != nil {
				p.url = m[1]
			}
			if m := secretRE.FindStringSubmatch(line); m != nil {
				p.secret = m[1]
			}
			if strings.HasPrefix(line, "Press Ctrl-C") && !signaled {
				signaled = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		err := cmd.Wait()
		close(p.exited)
		p.done <- err
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("dev exited before it was ready: %v\nstdout:\n%s\nstderr:\n%s", err, p.stdout, p.stderr)
	case <-time.After(2 * time.Minute):
		t.Fatalf("dev not ready after 2 minutes\nstderr:\n%s", p.stderr)
	}
	return p
}

func (p *devProcess) post(t *testing.T, body string) int {
	t.Helper()
	m := hmac.New(sha256.New, []byte(p.secret))
	m.Write([]byte(body))
	req, _ := http.NewRequest(http.MethodPost, p.url+"/webhooks/generic", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", hex.EncodeToString(m.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stop sends SIGTERM and waits for a clean exit.
func (p *devProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("dev exited with %v\nstderr:\n%s", err, p.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("dev did not exit within a minute of SIGTERM\nstderr:\n%s", p.stderr)
	}
}

// TestDevPersistsAcrossRestart: an event accepted by `hookstream dev` is in
// the embedded broker after dev is stopped with SIGTERM and started again on
// the same data dir, the generic secret stays the same, and the private
// PostgreSQL is stopped and started with it.
func TestDevPersistsAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and the broker twice")
	}
	dataDir, err := os.MkdirTemp("", "hookstream-devtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	// PostgreSQL may run as the postgres user (when root): let it in.
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	kafkaPort, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}

	first := startDev(t, dataDir, kafkaPort)
	if !strings.Contains(first.stdout.String(), "curl -i -X POST "+first.url+"/webhooks/generic") {
		t.Errorf("no ready-to-paste curl in:\n%s", first.stdout)
	}
	body := `{"event_id":"evt_persist","customer_id":"cus_p","event_type":"t","payload":{}}`
	if got := first.post(t, body); got != http.StatusAccepted {
		t.Fatalf("post: status %d", got)
	}
	// dev also runs the consumer: once the event is processed, sending it
	// again is a duplicate.
	deadline := time.Now().Add(time.Minute)
	for got := 0; got != http.StatusConflict; {
		if got = first.post(t, body); got != http.StatusConflict && got != http.StatusAccepted {
			t.Fatalf("resend: status %d", got)
		}
		if time.Now().After(deadline) {
			t.Fatal("the event was not processed within a minute")
		}
		time.Sleep(100 * time.Millisecond) // polling for the state, not timing it
	}
	first.stop(t)
	if pidFile := filepath.Join(dataDir, "postgres", "data", "postmaster.pid"); fileExists(pidFile) {
		t.Errorf("PostgreSQL still running after dev stopped (%s exists)", pidFile)
	}

	second := startDev(t, dataDir, kafkaPort)
	defer second.stop(t)
	if second.secret != first.secret {
		t.Errorf("generic secret changed across restart: %q then %q", first.secret, second.secret)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(fmt.Sprintf("127.0.0.1:%d", kafkaPort)),
		kgo.ConsumeTopics("hookstream.events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("the accepted event is not in hookstream.events after the restart")
		}
		if recs := fs.Records(); len(recs) > 0 {
			if string(recs[0].Value) != body || string(recs[0].Key) != "cus_p" {
				t.Fatalf("record %q/%q", recs[0].Key, recs[0].Value)
			}
			break
		}
	}
	if got := second.post(t, `{"event_id":"evt_after","customer_id":"cus_p","event_type":"t","payload":{}}`); got != http.StatusAccepted {
		t.Errorf("post after restart: %d", got)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestDevDataIsPrivate: on a shared machine, `hookstream dev` keeps its
// data to its user — the data dir 0700 (0710 for the postgres group when
// PostgreSQL runs as that user), every file in it 0600 and every directory
// 0700, the broker's included — and prints and logs the private
// PostgreSQL's URL without its password.
func TestDevDataIsPrivate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and the broker")
	}
	parent, err := os.MkdirTemp("", "hookstream-devtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil { // so that the postgres user may pass, when root
		t.Fatal(err)
	}
	dataDir := filepath.Join(parent, "data")
	kafkaPort, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dev := startDev(t, dataDir, kafkaPort)
	if got := dev.post(t, `{"event_id":"evt_private","customer_id":"cus_p","event_type":"t","payload":{}}`); got != http.StatusAccepted {
		t.Fatalf("post: status %d", got)
	}
	password, err := os.ReadFile(filepath.Join(dataDir, "postgres", "password"))
	if err != nil || len(strings.TrimSpace(string(password))) < 16 {
		t.Fatalf("the private PostgreSQL's password file: %q, %v", password, err)
	}
	dev.stop(t)
	for name, out := range map[string]string{"stdout": dev.stdout.String(), "stderr": dev.stderr.String()} {
		if strings.Contains(out, strings.TrimSpace(string(password))) {
			t.Errorf("dev's %s shows PostgreSQL's password:\n%s", name, out)
		}
	}
	if !strings.Contains(dev.stdout.String(), "PostgreSQL: postgres://postgres:REDACTED@127.0.0.1:") {
		t.Errorf("dev does not show the (redacted) PostgreSQL URL:\n%s", dev.stdout)
	}

	st, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	want := fs.FileMode(0o700)
	if os.Geteuid() == 0 {
		want = 0o710
	}
	if st.Mode().Perm() != want {
		t.Errorf("data dir mode %04o, want %04o", st.Mode().Perm(), want)
	}
	files := 0
	// The broker's files and dev's own; PostgreSQL's directory is checked
	// the same way when it is not elsewhere (a link to /var/tmp).
	err = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dataDir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode().IsRegular():
			files++
			if info.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: mode %04o, want 0600", path, info.Mode().Perm())
			}
		case info.IsDir():
			if info.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: mode %04o, want 0700", path, info.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Errorf("only %d files under %s: is the data elsewhere?", files, dataDir)
	}
}

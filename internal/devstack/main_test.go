package devstack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a parent process that starts a
// server and is then killed, for the crash tests.
const helperEnv = "DEVSTACK_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	goleak.VerifyTestMain(m)
}

// runHelper starts a PostgreSQL server (or with "kafka" a broker) in
// $DEVSTACK_TEST_DIR, prints "ready <url or address>" and waits until
// stdin closes, never stopping the server itself: it stands for a
// `hookstream dev` or test binary that dies.
func runHelper() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if os.Getenv(helperEnv) == "kafka" {
		k, err := StartKafka(ctx, KafkaConfig{DataDir: os.Getenv("DEVSTACK_TEST_DIR"), ListenAddr: "127.0.0.1:0"})
		if err != nil {
			fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
			return 1
		}
		fmt.Println("ready", k.Addrs()[0])
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	pg, err := StartPostgres(ctx, PostgresConfig{
		DataDir:   os.Getenv("DEVSTACK_TEST_DIR"),
		NoSync:    true,
		Ephemeral: os.Getenv(helperEnv) == "ephemeral",
	})
	if err != nil {
		fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	fmt.Println("ready", pg.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startHelper runs runHelper in a child process and returns it with the
// server's URL once the server is up.
func startHelper(t *testing.T, mode, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "DEVSTACK_TEST_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if !ok {
		t.Fatalf("helper: %s", line)
	}
	return cmd, url
}

// killHelper kills the helper with SIGKILL, so nothing of it runs after.
func killHelper(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		if err := waitTick(context.Background(), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

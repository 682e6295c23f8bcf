package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"go.uber.org/goleak"
)

var (
	teardownMu sync.Mutex
	teardown   []func()
)

// atExit registers f to run when Main ends, after the tests, in reverse
// order of registration.
func atExit(f func()) {
	teardownMu.Lock()
	defer teardownMu.Unlock()
	teardown = append(teardown, f)
}

// Main runs the tests, then stops every service the package's tests
// started, then runs cleanups, and exits. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// cleanups are for what TestMain set up itself: Main exits the process, so
// TestMain's deferred calls would not run.
func Main(m *testing.M, cleanups ...func()) {
	for _, f := range cleanups {
		atExit(f) // registered first, so they run last
	}
	code := m.Run()
	teardownMu.Lock()
	fs := teardown
	teardown = nil
	teardownMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	if code == 0 {
		// Everything the tests started is stopped by now: a goroutine left
		// running is a leak (of the code under test, or of a test).
		if err := goleak.Find(leakIgnores...); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leakIgnores are goroutines of libraries that outlive the tests by design
// and cannot be stopped. None so far: keep each one here with its reason.
var leakIgnores []goleak.Option

// unavailable ends a test whose service could not start: it fails under
// CI, where a skip would turn a broken environment green, and is skipped
// elsewhere, so that `go test ./...` works on any machine.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("testenv: CI is set and a test service could not start: %s", msg)
		return
	}
	t.Skipf("testenv: test service unavailable (set CI=true to make this a failure): %s", msg)
}

func randomSuffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	dockerOnce sync.Once
	dockerErr  error
)

// dockerEngine reports, once per test binary, whether a Docker engine
// answers, and if not why. It asks testcontainers itself, so every place
// testcontainers would find an engine counts, and bounds the question:
// with no engine it answers in milliseconds.
// requireDocker reports whether HOOKSTREAM_TEST_DOCKER asks for the
// services in Docker (make test-docker): then a missing engine is an
// error, not a reason to fall back.
func requireDocker() bool { return os.Getenv("HOOKSTREAM_TEST_DOCKER") != "" }

func dockerEngine() error {
	dockerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		defer func() {
			// testcontainers panics in some "no Docker" cases.
			if r := recover(); r != nil {
				dockerErr = fmt.Errorf("no Docker engine: %v", r)
			}
		}()
		cl, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err != nil {
			dockerErr = fmt.Errorf("no Docker engine: %w", err)
			return
		}
		defer func() { _ = cl.Close() }()
		if _, err := cl.Info(ctx, client.InfoOptions{}); err != nil {
			dockerErr = fmt.Errorf("no Docker engine: %w", err)
		}
	})
	return dockerErr
}

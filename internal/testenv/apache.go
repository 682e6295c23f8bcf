package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/kafka"
)

// apacheMode reports whether HOOKSTREAM_TEST_KAFKA asks for Apache Kafka.
// Any other value but "" is a mistake the run should stop on, not a
// reason to fall back to kfake quietly.
func apacheMode() (bool, error) {
	switch v := os.Getenv("HOOKSTREAM_TEST_KAFKA"); v {
	case "":
		return false, nil
	case "apache":
		return true, nil
	default:
		return false, fmt.Errorf(`HOOKSTREAM_TEST_KAFKA=%q: the only value is "apache" (unset: the default broker)`, v)
	}
}

// apacheCluster is a cluster of scripts/kafka-cluster.sh in a temporary
// directory of its own.
type apacheCluster struct {
	script  string
	dir     string
	brokers []string
	wd      *exec.Cmd
	wdPipe  *os.File // closing it releases the watchdog
	once    sync.Once
}

// The watchdog stops the cluster and removes its directory when its stdin
// closes: when close is called, and also when the test binary dies
// without running its cleanups (panic, timeout, kill -9), because the
// kernel closes our end of the pipe however we exit. Left running, three
// JVMs would hold a gigabyte and their ports until someone noticed. The
// nodes are killed rather than stopped: their data is thrown away.
const apacheWatchdogScript = `cat >/dev/null; KAFKA_CLUSTER_STOP_TIMEOUT=0 "$1" down "$2" >/dev/null 2>&1; rm -rf "$2"`

// startApache creates and starts an n-node cluster; it takes half a
// minute, more on the first run on a machine, when Maven resolves Kafka.
func startApache(ctx context.Context, n int) (c *apacheCluster, err error) {
	script, err := clusterScript()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hookstream-kafka-")
	if err != nil {
		return nil, err
	}
	cl := &apacheCluster{script: script, dir: dir}
	c = cl
	r, w, err := os.Pipe() // O_CLOEXEC: no other child inherits our end
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	c.wd = exec.Command("/bin/sh", "-c", apacheWatchdogScript, "hookstream-kafka-watchdog", script, dir)
	c.wd.Stdin = r
	// Its own process group: a Ctrl-C meant for the tests must not stop
	// it before it has cleaned up.
	c.wd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = c.wd.Start()
	_ = r.Close()
	if err != nil {
		_ = w.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("kafka-cluster watchdog: %w", err)
	}
	c.wdPipe = w
	defer func() {
		if err != nil {
			cl.close() // not c: a failing return has set it to nil
		}
	}()
	last, err := c.run(ctx, "up", dir, strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	c.brokers = kafka.ParseBrokers(last)
	if len(c.brokers) != n {
		return nil, fmt.Errorf("kafka-cluster.sh up printed %q, want %d brokers", last, n)
	}
	if err := warmUp(ctx, c.brokers); err != nil {
		return nil, fmt.Errorf("a new Apache Kafka cluster in %s: %w", dir, err)
	}
	return c, nil
}

// clusterScript finds scripts/kafka-cluster.sh at the root of the module,
// above the package directory the tests run in.
func clusterScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(dir, "scripts", "kafka-cluster.sh")
			if _, err := os.Stat(s); err != nil {
				return "", fmt.Errorf("kafka-cluster.sh: %w", err)
			}
			return s, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kafka-cluster.sh: no go.mod above the test's directory")
		}
		dir = parent
	}
}

// run runs the script and returns the last line of its output; an error
// carries what the script said on stderr (a node's log tail, Maven's).
func (c *apacheCluster) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{c.script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kafka-cluster.sh %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], nil
}

// close kills the nodes and removes the directory, through the watchdog.
func (c *apacheCluster) close() {
	c.once.Do(func() {
		_ = c.wdPipe.Close()
		done := make(chan struct{})
		go func() {
			_ = c.wd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			_ = syscall.Kill(-c.wd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
}

// Cluster is an Apache Kafka cluster of one test, whose nodes the test
// kills and restarts. Node IDs are 1 to N and are also the brokers' IDs,
// as metadata reports them (a partition's leader, its ISR).
type Cluster struct {
	t testing.TB
	c *apacheCluster
}

// KafkaCluster starts a cluster of n combined broker and controller nodes
// (scripts/kafka-cluster.sh) for this test, removed when it ends. It takes
// half a minute, so it is only for tests that kill or restart brokers, or
// need a number of them the shared cluster does not have.
//
// It runs real Apache Kafka only when HOOKSTREAM_TEST_KAFKA=apache, and
// skips the test otherwise, even under CI: a fault of one broker among
// several cannot be played on kfake, and the quick suite does not pay half
// a minute per test. CI runs these tests in its Apache Kafka stage. When
// the cluster cannot start, the test fails under CI and is skipped
// elsewhere, like every service of this package.
func KafkaCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 || n > 9 {
		t.Fatalf("testenv: KafkaCluster: %d nodes, want 1 to 9", n)
	}
	apache, err := apacheMode()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if !apache {
		t.Skip("testenv: KafkaCluster runs Apache Kafka: set HOOKSTREAM_TEST_KAFKA=apache")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := startApache(ctx, n)
	if err != nil {
		unavailable(t, "Apache Kafka cluster: %v", err)
	}
	t.Cleanup(c.close)
	return &Cluster{t: t, c: c}
}

// Brokers are the seed addresses of every node, the same across Kill and
// Start.
func (c *Cluster) Brokers() []string { return c.c.brokers }

// Dir holds the cluster's files; node I's log is node-I/server.log.
func (c *Cluster) Dir() string { return c.c.dir }

// Kill sends node id SIGKILL and returns once it is gone: no controlled
// shutdown, no flush, like a crash. It fails the test on error, so call
// it from the test's goroutine.
func (c *Cluster) Kill(id int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.c.run(ctx, "kill", c.c.dir, strconv.Itoa(id)); err != nil {
		c.t.Fatalf("testenv: %v", err)
	}
}

// KillNode is Kill for any goroutine: it returns the error instead of
// failing the test.
func (c *Cluster) KillNode(ctx context.Context, id int) error {
	_, err := c.c.run(ctx, "kill", c.c.dir, strconv.Itoa(id))
	return err
}

// Start starts node id again with its data and returns once it serves
// (its broker unfenced; its replicas may still be catching up). It fails
// the test on error, so call it from the test's goroutine.
func (c *Cluster) Start(id int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.StartNode(ctx, id); err != nil {
		c.t.Fatalf("testenv: %v", err)
	}
}

// StartNode is Start for any goroutine: it returns the error instead of
// failing the test. A node takes seconds to serve again; a test that goes
// on meanwhile runs it in a goroutine of its own.
func (c *Cluster) StartNode(ctx context.Context, id int) error {
	_, err := c.c.run(ctx, "start", c.c.dir, strconv.Itoa(id))
	return err
}

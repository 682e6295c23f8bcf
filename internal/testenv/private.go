package testenv

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/migrate"
)

// Broker is a private broker of one test, which the test stops and starts.
// It is never the shared or external broker (HOOKSTREAM_TEST_KAFKA_BROKERS
// is not looked at), because the test must control its lifetime.
//
// Without HOOKSTREAM_TEST_KAFKA it is the in-process kfake broker,
// persisted in a temporary directory. With HOOKSTREAM_TEST_KAFKA=apache it
// is a one-node Apache Kafka cluster of the test's own (KafkaCluster(t,
// 1): a combined broker and controller, half a minute to start), so that
// an outage test sees a real broker go away and come back. One node, not
// three: Stop is the whole broker going away, which on three nodes means
// killing the whole quorum and starting it again all at once, three JVMs
// per test for nothing the tests assert; fail-over among several brokers
// is KafkaCluster's. On one node topics get one replica (internal/topics:
// min(3, brokers)) and min.insync.replicas 1, like on kfake.
//
// What a test asserts must therefore hold on both: rely on what the
// protocol promises (acknowledged records survive, clients reconnect),
// not on kfake's particulars. Kafka() (kfake's controls) is nil in apache
// mode: a test that uses it takes another way there (audit's compaction
// test) or skips, saying why.
type Broker struct {
	t    testing.TB
	dir  string
	addr string // fixed after the first start, so clients find it again

	mu sync.Mutex
	k  *devstack.Kafka // nil while stopped, and always in apache mode

	apache  *Cluster // the one-node cluster in apache mode
	stopped bool     // apache mode: node 1 is killed
}

// NewKafka starts a private broker, persisted in a temporary directory so
// that a restart keeps what it acknowledged, and removed when the test
// ends.
func NewKafka(t testing.TB) *Broker {
	t.Helper()
	apache, err := apacheMode()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if apache {
		c := KafkaCluster(t, 1) // removes it when the test ends
		t.Logf("testenv: private broker: Apache Kafka, 1 node (scripts/kafka-cluster.sh in %s): %s", c.Dir(), c.Brokers()[0])
		return &Broker{t: t, dir: c.Dir(), addr: c.Brokers()[0], apache: c}
	}
	b := &Broker{t: t, dir: t.TempDir()}
	k, err := devstack.StartKafka(context.Background(), devstack.KafkaConfig{DataDir: b.dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		unavailable(t, "private Kafka broker: %v", err)
	}
	b.k, b.addr = k, k.Addrs()[0]
	t.Cleanup(b.Stop)
	return b
}

// Addrs are the broker's seed addresses, the same across Stop and Start.
func (b *Broker) Addrs() []string { return []string{b.addr} }

// Kafka is the running kfake broker (for kfake's controls), nil while
// stopped, and always nil in apache mode, where those controls do not
// exist: a test that needs them skips there, saying why.
func (b *Broker) Kafka() *devstack.Kafka {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.k
}

// Stop takes the broker away, keeping its data; clients see their
// connections drop, and nothing answers on its address until Start. A
// no-op when it is stopped.
//
// kfake is closed. Apache Kafka's node is killed (SIGKILL, the stronger
// of the two faults: no controlled shutdown, no flush, no leadership
// moved): what it acknowledged is in its log files, written before the
// acknowledgement, and survives the process (not a crash of the machine,
// which no test here plays). In apache mode Stop fails the test on error,
// so call it from the test's goroutine.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.apache != nil {
		if !b.stopped {
			b.t.Helper()
			b.apache.Kill(1)
			b.stopped = true
		}
		return
	}
	if b.k != nil {
		b.k.Close()
		b.k = nil
	}
}

// Start starts the broker again on the same address with the same data,
// and returns once it serves. A no-op when it runs. It fails the test if
// the broker cannot start, so call it from the test's goroutine.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.apache != nil {
		if b.stopped {
			b.apache.Start(1) // recovers the log the kill left unflushed
			b.stopped = false
		}
		return
	}
	if b.k != nil {
		return
	}
	// The port was ours until Stop. Only if another socket took it
	// meanwhile (an outgoing connection's ephemeral port, say) does
	// binding fail, and then briefly; wait for it, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, err := devstack.StartKafka(context.Background(), devstack.KafkaConfig{DataDir: b.dir, ListenAddr: b.addr})
		if err == nil {
			b.k = k
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			b.t.Fatalf("testenv: restart the private broker: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling a port someone else holds; nothing to wait on
	}
}

// PGServer is a private PostgreSQL server of one test, which the test
// stops and starts. It is always a local server (devstack), never the
// shared or external one, because the test controls its lifetime.
type PGServer struct {
	t  testing.TB
	pg *devstack.Postgres
}

// NewPostgres starts a private server from the machine's PostgreSQL
// binaries, with hookstream's migrations applied to its postgres
// database, and removes it when the test ends. It takes a second or two:
// use Postgres unless the test stops the server.
func NewPostgres(t testing.TB) *PGServer {
	t.Helper()
	// Not t.TempDir: when the tests run as root, the server runs as the
	// postgres user, and t.TempDir's parent (mode 0700) is closed to it.
	dir, err := os.MkdirTemp("", "hookstream-pgserver-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{DataDir: dir, NoSync: true, Ephemeral: true})
	if err != nil {
		_ = os.RemoveAll(dir)
		unavailable(t, "private PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pg.Close(ctx); err != nil {
			t.Logf("testenv: private PostgreSQL: %v", err)
		}
	})
	if _, err := migrate.Up(ctx, pg.URL()); err != nil {
		t.Fatalf("testenv: private PostgreSQL: %v", err)
	}
	return &PGServer{t: t, pg: pg}
}

// URL of the migrated database; the same across Stop and Start.
func (s *PGServer) URL() string { return s.pg.URL() }

// Stop stops the server (fast shutdown: sessions end, committed data
// stays). It fails the test on error, so call it from the test's goroutine.
func (s *PGServer) Stop() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.pg.Stop(ctx); err != nil {
		s.t.Fatalf("testenv: stop the private PostgreSQL: %v", err)
	}
}

// Crash stops the server with an immediate shutdown, like a crash: no
// checkpoint, and Start recovers from the WAL. It fails the test on
// error, so call it from the test's goroutine.
func (s *PGServer) Crash() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.pg.Crash(ctx); err != nil {
		s.t.Fatalf("testenv: crash the private PostgreSQL: %v", err)
	}
}

// Start starts it again on the same port with the same data. It fails the
// test on error, so call it from the test's goroutine.
func (s *PGServer) Start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.pg.Start(ctx); err != nil {
		s.t.Fatalf("testenv: start the private PostgreSQL: %v", err)
	}
}

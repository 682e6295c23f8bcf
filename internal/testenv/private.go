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
//
// It is always the in-process kfake broker, whatever HOOKSTREAM_TEST_KAFKA_BROKERS
// says, because the test must control its lifetime, which a shared or
// external broker does not allow (KafkaCluster is the Apache Kafka one). What such a test asserts must therefore
// also hold on a real Kafka going away and coming back: rely on what the
// protocol promises (acknowledged records survive, clients reconnect), not
// on kfake's particulars.
type Broker struct {
	t    testing.TB
	dir  string
	addr string // fixed after the first start, so clients find it again

	mu sync.Mutex
	k  *devstack.Kafka // nil while stopped
}

// NewKafka starts a private broker, persisted in a temporary directory so
// that a restart keeps what it acknowledged, and stopped when the test
// ends.
func NewKafka(t testing.TB) *Broker {
	t.Helper()
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

// Kafka is the running broker (for kfake's controls), nil while stopped.
func (b *Broker) Kafka() *devstack.Kafka {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.k
}

// Stop closes the broker, keeping its data; clients see their connections
// drop. A no-op when it is stopped.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.k != nil {
		b.k.Close()
		b.k = nil
	}
}

// Start starts the broker again on the same address with the same data.
// A no-op when it runs. It fails the test if the broker cannot start, so
// call it from the test's goroutine.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
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
// stops and starts. Like Broker, it is always a local server (devstack),
// never the shared or external one, because the test controls its
// lifetime.
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

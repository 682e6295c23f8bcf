package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/migrate"
)

// Broker is a private in-process broker that a test can stop and start.
// It is always kfake, because the test controls its lifetime; tests using
// it must only rely on what a real broker that goes away would also do.
type Broker struct {
	t    testing.TB
	dir  string
	addr string
	mu   sync.Mutex
	k    *devstack.Kafka
}

// NewKafka starts a private broker persisted in a temporary directory, on a
// fixed port that survives Stop and Start.
func NewKafka(t testing.TB) *Broker {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		unavailable(t, "free port: %v", err)
	}
	b := &Broker{t: t, dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", port)}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// Addrs are the broker's seed addresses (stable across restarts).
func (b *Broker) Addrs() []string { return []string{b.addr} }

// Kafka is the running broker, nil while stopped.
func (b *Broker) Kafka() *devstack.Kafka {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.k
}

// Start starts the broker; it is a no-op when it runs.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.k != nil {
		return
	}
	// The port was just released by Stop or FreePort; on a busy machine
	// another process may take it for a moment, so retry briefly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, err := devstack.StartKafka(context.Background(), devstack.KafkaConfig{DataDir: b.dir, ListenAddr: b.addr})
		if err == nil {
			b.k = k
			return
		}
		if time.Now().After(deadline) {
			unavailable(b.t, "private broker: %v", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop closes the broker, keeping its data; a no-op when stopped.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.k != nil {
		b.k.Close()
		b.k = nil
	}
}

// PGServer is a private PostgreSQL server that a test can stop and start.
type PGServer struct {
	t   testing.TB
	pg  *devstack.Postgres
	url string
}

// NewPostgres starts a private server from the machine's binaries with a
// migrated database, stopped when the test ends.
func NewPostgres(t testing.TB) *PGServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "hookstream-pgserver-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		unavailable(t, "private PostgreSQL: %v", err)
	}
	s := &PGServer{t: t, pg: pg, url: pg.URL()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = pg.Stop(ctx)
	})
	if _, err := migrate.Up(ctx, s.url); err != nil {
		t.Fatal(err)
	}
	return s
}

// URL of the migrated database.
func (s *PGServer) URL() string { return s.url }

// Stop stops the server (fast shutdown).
func (s *PGServer) Stop() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.pg.Stop(ctx); err != nil {
		s.t.Fatal(err)
	}
}

// Start starts it again on the same port and data.
func (s *PGServer) Start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.pg.Start(ctx); err != nil {
		s.t.Fatal(err)
	}
}

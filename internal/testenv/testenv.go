package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/migrate"
	"github.com/hookstream/hookstream/internal/topics"
	"github.com/hookstream/hookstream/internal/wire"
)

var (
	mu       sync.Mutex
	teardown []func()
)

func atExit(f func()) {
	mu.Lock()
	defer mu.Unlock()
	teardown = append(teardown, f)
}

// Main runs the tests, then stops every service the package started and
// runs cleanups (Main exits the process, so a caller's defers would not run).
func Main(m *testing.M, cleanups ...func()) {
	for _, f := range cleanups {
		atExit(f)
	}
	code := m.Run()
	mu.Lock()
	fs := teardown
	teardown = nil
	mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	os.Exit(code)
}

// unavailable fails the test under CI and skips it elsewhere.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and a test service could not start: %s", msg)
	}
	t.Skipf("test service unavailable (set CI to make this fail): %s", msg)
}

func randomSuffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dockerAvailable reports whether a Docker engine answers, cheaply: the
// socket of DOCKER_HOST or the default one must accept a connection.
func dockerAvailable() bool {
	addr := "/var/run/docker.sock"
	network := "unix"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		u, err := url.Parse(h)
		if err != nil {
			return false
		}
		switch u.Scheme {
		case "unix":
			addr = u.Path
		case "tcp":
			network, addr = "tcp", u.Host
		default:
			return false
		}
	}
	c, err := net.DialTimeout(network, addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ---- PostgreSQL ----

var (
	pgOnce     sync.Once
	pgServer   string // URL of the server's postgres database
	pgTemplate string
	pgErr      error
	createMu   sync.Mutex
)

func startPostgres() (string, error) {
	if u := os.Getenv("HOOKSTREAM_TEST_DATABASE_URL"); u != "" {
		return u, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if dockerAvailable() {
		return startPostgresContainer(ctx)
	}
	dir, err := os.MkdirTemp("", "hookstream-testpg-")
	if err != nil {
		return "", err
	}
	// The server may run as the postgres user (when root): let it in.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	atExit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = pg.Stop(ctx)
		os.RemoveAll(dir)
	})
	return pg.URL(), nil
}

// withDatabase returns serverURL pointing at database name.
func withDatabase(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func exec(ctx context.Context, dbURL, sql string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func preparePostgres() {
	pgServer, pgErr = startPostgres()
	if pgErr != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgTemplate = "hookstream_template_" + randomSuffix()
	if pgErr = exec(ctx, pgServer, "CREATE DATABASE "+pgTemplate); pgErr != nil {
		return
	}
	tmplURL, err := withDatabase(pgServer, pgTemplate)
	if err != nil {
		pgErr = err
		return
	}
	if _, pgErr = migrate.Up(ctx, tmplURL); pgErr != nil {
		return
	}
	server, tmpl := pgServer, pgTemplate
	atExit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec(ctx, server, "DROP DATABASE IF EXISTS "+tmpl+" WITH (FORCE)")
	})
}

// Postgres returns the URL of a fresh, migrated database of this test's
// own, dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	pgOnce.Do(preparePostgres)
	if pgErr != nil {
		unavailable(t, "PostgreSQL: %v", pgErr)
	}
	name := "test_" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// CREATE DATABASE … TEMPLATE needs the template to have no other
	// session; creating one at a time keeps that true.
	createMu.Lock()
	err := exec(ctx, pgServer, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, pgTemplate))
	createMu.Unlock()
	if err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, pgServer, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(pgServer, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// ---- Kafka ----

var (
	kOnce    sync.Once
	kBrokers []string
	kErr     error
)

func startKafka() ([]string, error) {
	if b := kafka.ParseBrokers(os.Getenv("HOOKSTREAM_TEST_KAFKA_BROKERS")); len(b) > 0 {
		return b, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if dockerAvailable() {
		return startKafkaContainer(ctx)
	}
	k, err := devstack.StartKafka(ctx, devstack.KafkaConfig{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	atExit(k.Close)
	return k.Addrs(), nil
}

// Kafka returns seed brokers shared by the tests of this binary. Use
// Topics for topics of a test's own.
func Kafka(t testing.TB) []string {
	t.Helper()
	kOnce.Do(func() { kBrokers, kErr = startKafka() })
	if kErr != nil {
		unavailable(t, "Kafka: %v", kErr)
	}
	return kBrokers
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Topics creates hookstream's three topics under names of this test's own
// (12 partitions each) and deletes them when the test ends.
func Topics(t testing.TB, brokers []string) wire.Topics {
	return TopicsN(t, brokers, 12)
}

// TopicsN is Topics with the given partition count.
func TopicsN(t testing.TB, brokers []string, partitions int32) wire.Topics {
	t.Helper()
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 100 {
		name = name[:100]
	}
	prefix := "t." + strings.ToLower(name) + "." + randomSuffix() + "."
	tp := wire.Topics{Events: prefix + "events", DLQ: prefix + "dlq", Audit: prefix + "audit"}
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := topics.Ensure(ctx, adm, topics.Config{Topics: tp, Partitions: partitions, AuditPartitions: partitions}); err != nil {
		t.Fatalf("testenv: create topics: %v", err)
	}
	t.Cleanup(func() {
		adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
		if err != nil {
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, tp.Events, tp.DLQ, tp.Audit)
	})
	return tp
}

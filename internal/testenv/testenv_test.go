package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { Main(m) }

// Tests running in parallel each get a database of their own, migrated,
// and it is gone when the test ends.
func TestPostgresGivesEachTestItsOwnMigratedDatabase(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		urls []string
	)
	t.Run("tests", func(t *testing.T) {
		for i := range 4 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				u := Postgres(t)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				conn, err := pgx.Connect(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				// The migrated schema is there and empty; a write stays here.
				if _, err := conn.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('s', $1, 'c', 'PROCESSED')`, fmt.Sprint(i)); err != nil {
					t.Fatalf("events table: %v", err)
				}
				var n int
				if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil || n != 1 {
					t.Fatalf("%d rows in this test's events table, want 1 (%v)", n, err)
				}
				mu.Lock()
				urls = append(urls, u)
				mu.Unlock()
			})
		}
	})
	seen := map[string]bool{}
	for _, u := range urls {
		if seen[u] {
			t.Errorf("two tests got the same database %s", u)
		}
		seen[u] = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := pgx.Connect(ctx, u)
		cancel()
		var pgErr *pgconn.PgError
		if err == nil {
			conn.Close(context.Background())
			t.Errorf("%s still exists after its test ended", u)
		} else if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
			t.Errorf("%s after its test ended: %v, want database does not exist", u, err)
		}
	}
}

func TestKafkaTopicsRoundTrip(t *testing.T) {
	t.Parallel()
	brokers := Kafka(t)
	tp := Topics(t, brokers)
	other := Topics(t, brokers)
	if tp == other {
		t.Fatalf("two calls gave the same topics %+v", tp)
	}
	for _, name := range []string{tp.Events, tp.DLQ, tp.Audit} {
		if !strings.HasPrefix(name, "t-testkafkatopicsroundtrip-") || strings.Contains(name, "_") {
			t.Errorf("topic name %q", name)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(tp.Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	details, err := kadm.NewClient(cl).ListTopics(ctx, tp.Events, tp.DLQ, tp.Audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range details {
		if d.Err != nil || len(d.Partitions) != 12 {
			t.Errorf("%s: %d partitions, %v; want 12", d.Topic, len(d.Partitions), d.Err)
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: tp.Events, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("record not consumed")
		}
		if recs := fs.Records(); len(recs) > 0 {
			if string(recs[0].Value) != "v" {
				t.Fatalf("got %q", recs[0].Value)
			}
			return
		}
	}
}

func TestPrivateBrokerKeepsDataAcrossRestart(t *testing.T) {
	t.Parallel()
	b := NewKafka(t)
	tp := TopicsN(t, b.Addrs(), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prod, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: tp.Events, Key: []byte("k"), Value: []byte("persisted")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	addrs := b.Addrs()
	b.Stop()
	if b.Kafka() != nil {
		t.Fatal("Kafka() is not nil while stopped")
	}
	b.Start()
	if fmt.Sprint(b.Addrs()) != fmt.Sprint(addrs) {
		t.Fatalf("address changed across a restart: %v, was %v", b.Addrs(), addrs)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.ConsumeTopics(tp.Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("record lost across restart")
		}
		if recs := fs.Records(); len(recs) > 0 {
			if string(recs[0].Value) != "persisted" {
				t.Fatalf("got %q", recs[0].Value)
			}
			return
		}
	}
}

func TestPrivatePostgresStopStart(t *testing.T) {
	t.Parallel()
	s := NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, s.URL())
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(`INSERT INTO events (source, event_id, customer_id, status) VALUES ('s', 'e', 'c', 'PROCESSED')`); err != nil {
		t.Fatalf("migrated database: %v", err)
	}
	s.Stop()
	if err := exec(`SELECT 1`); err == nil {
		t.Fatal("the server answers after Stop")
	}
	s.Start()
	if err := exec(`DELETE FROM events WHERE event_id = 'e'`); err != nil {
		t.Fatalf("after Start: %v", err)
	}
}

// recordingTB records how unavailable ended a test.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recordingTB) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestUnavailableFailsOnlyUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	var r recordingTB
	unavailable(&r, "no %s", "server")
	if r.failed != "" || !strings.Contains(r.skipped, "no server") {
		t.Errorf("without CI: skipped %q, failed %q", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	r = recordingTB{}
	unavailable(&r, "no %s", "server")
	if r.skipped != "" || !strings.Contains(r.failed, "no server") {
		t.Errorf("under CI: skipped %q, failed %q", r.skipped, r.failed)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:p@h:5432/postgres?sslmode=disable": "postgres://u:p@h:5432/x?sslmode=disable",
		"postgresql://h/db":             "postgresql://h/x",
		"host=h user=u dbname=postgres": "host=h user=u dbname=postgres dbname=x",
	} {
		if got, err := withDatabase(in, "x"); err != nil || got != want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

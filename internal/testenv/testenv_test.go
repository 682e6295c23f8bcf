package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgresGivesEachTestAMigratedDatabase(t *testing.T) {
	t.Parallel()
	a, b := Postgres(t), Postgres(t)
	if a == b {
		t.Fatalf("two calls gave the same database %s", a)
	}
	ctx := context.Background()
	for _, u := range []string{a, b} {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
			t.Fatalf("events table in %s: %v", u, err)
		}
		conn.Close(ctx)
	}
	// Writes to one are not seen by the other.
	ca, _ := pgx.Connect(ctx, a)
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('s','e','c','PROCESSED')`); err != nil {
		t.Fatal(err)
	}
	cb, _ := pgx.Connect(ctx, b)
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("isolation: %d rows, %v", n, err)
	}
}

func TestKafkaTopicsRoundTrip(t *testing.T) {
	t.Parallel()
	brokers := Kafka(t)
	tp := Topics(t, brokers)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(tp.Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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
	tp := Topics(t, b.Addrs())
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
	b.Stop()
	b.Start()
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

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/metricstest"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// `consume --http-addr` serves /healthz, /readyz and /metrics, and /metrics
// carries the Kafka client metrics of the consumer (fetches) and of the
// audit relay (produces), which move with the traffic.
//
// Not parallel: the client metrics are the process's (the default
// Prometheus registry), and of two open clients with one client id only
// the first's are exported (internal/kafka, tolerantRegistry). A parallel
// test's relay or consumer that started first hid this one's: 10 of 10
// PROCESSED and the relay's count read 0 until the deadline, the flake
// seen on loaded machines (reproduced every time by starting this test's
// process 1.5 s late beside TestPausedMemberDoesNotHoldItsPartitions).
func TestConsumeServesHealthAndKafkaClientMetrics(t *testing.T) {
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testTopics(ctx, t, broker.Addrs(), 3)
	var logs testenv.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	defer func() {
		if t.Failed() {
			t.Logf("the process's log:\n%s", logs.String())
		}
	}()
	proc, err := startProcessing(ctx, processingOptions{
		brokers: broker.Addrs(), databaseURL: dbURL, instance: "metrics-test", group: "hookstream", concurrency: 2, log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proc.serve(ctx, "127.0.0.1:0", log)
	if err != nil {
		proc.stop()
		t.Fatal(err)
	}
	defer func() {
		proc.stop()
		if err := srv.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + srv.Addr()

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
	// The containers' health check is the binary probing the same endpoint.
	var stderr strings.Builder
	if code := run(ctx, []string{"healthcheck", "--url", base + "/readyz"}, io.Discard, &stderr); code != 0 {
		t.Errorf("healthcheck of /readyz: exit %d: %s", code, stderr.String())
	}
	if code := run(ctx, []string{"healthcheck", "--url", base + "/nope"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("healthcheck of a 404: exit %d, want 1", code)
	}
	consumerFetched := func() float64 {
		v, _ := metricstest.Scrape(t, base+"/metrics", "hookstream_fetch_records_total", `client_id="hookstream-consumer"`, `topic="hookstream.events"`)
		return v
	}
	relayProduced := func() float64 {
		v, _ := metricstest.Scrape(t, base+"/metrics", "hookstream_produce_records_total", `client_id="hookstream-audit-relay"`, `topic="hookstream.audit"`)
		return v
	}
	if got := consumerFetched(); got != 0 {
		t.Fatalf("consumer fetched %v records before any was produced", got)
	}

	const n = 10
	prod, err := kafka.NewProducer(kafka.Config{Brokers: broker.Addrs(), ClientID: "metrics-test-producer"})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for i := range n {
		id, cust := fmt.Sprintf("evt-%d", i), fmt.Sprintf("cus-%d", i%3)
		rec := &kgo.Record{Topic: wire.DefaultEventsTopic, Key: []byte(cust), Value: []byte(`{}`), Headers: []kgo.RecordHeader{
			{Key: wire.HeaderEventID, Value: []byte(id)}, {Key: wire.HeaderSource, Value: []byte("metrics")},
			{Key: wire.HeaderCustomerID, Value: []byte(cust)}, {Key: wire.HeaderContentType, Value: []byte("application/json")},
		}}
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for {
		var processed int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE status = 'PROCESSED'`).Scan(&processed); err != nil {
			t.Fatal(err)
		}
		// The relay publishes the consumer's audit rows after they commit.
		if processed == n && relayProduced() >= n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d PROCESSED, relay produced %v audit records", processed, n, relayProduced())
		}
		time.Sleep(20 * time.Millisecond) // polling for the state
	}
	if got := consumerFetched(); got < n {
		t.Errorf("hookstream_fetch_records_total of the consumer = %v after %d events, want at least %d", got, n, n)
	}
}

// A member paused inside one of its transactions (SIGSTOP, a long GC pause)
// holds the transaction's locks while paused, among them the share lock on
// its partition's owner epoch, which the next owner's take waits for. The
// consumer role's connections end a transaction left idle, so the next
// owner gets the partition. The paused member here is a transaction opened
// on a pool of the consumer role, left idle after its fence; without the
// bound the next member never processes the partition's event.
func TestPausedMemberDoesNotHoldItsPartitions(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testTopics(ctx, t, broker.Addrs(), 1)
	const idle = 2 * time.Second
	paused, err := newProcessingPool(ctx, dbURL, 2, idle)
	if err != nil {
		t.Fatal(err)
	}
	defer paused.Close()
	// The previous owner took the partition (epoch 1), began a
	// transaction, fenced it, and stopped there.
	if _, err := paused.Exec(ctx, `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, owner_epoch) VALUES ('hookstream', $1, 0, -1, 1)`, wire.DefaultEventsTopic); err != nil {
		t.Fatal(err)
	}
	tx, err := paused.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // PostgreSQL ended it
	var epoch int64
	if err := tx.QueryRow(ctx, `SELECT owner_epoch FROM consumer_offsets WHERE group_id = 'hookstream' AND topic = $1 AND partition = 0 FOR SHARE`, wire.DefaultEventsTopic).Scan(&epoch); err != nil {
		t.Fatal(err)
	}

	prod, err := kafka.NewProducer(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	rec := &kgo.Record{Topic: wire.DefaultEventsTopic, Key: []byte("cus-p"), Value: []byte(`{}`), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderEventID, Value: []byte("evt-p")}, {Key: wire.HeaderSource, Value: []byte("paused")},
		{Key: wire.HeaderCustomerID, Value: []byte("cus-p")}, {Key: wire.HeaderContentType, Value: []byte("application/json")},
	}}
	if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	proc, err := startProcessing(ctx, processingOptions{
		brokers: broker.Addrs(), databaseURL: dbURL, instance: "next-owner", group: "hookstream", concurrency: 2,
		idleTransactionTimeout: idle, log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.stop()
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := paused.QueryRow(ctx, `SELECT count(*) FROM events WHERE event_id = 'evt-p' AND status = 'PROCESSED'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the next owner did not process the partition within a minute of the previous owner's pause")
		}
		time.Sleep(50 * time.Millisecond) // polling for the state
	}
}

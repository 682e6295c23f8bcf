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
	"github.com/hookstream/hookstream/internal/topics"
	"github.com/hookstream/hookstream/internal/wire"
)

// `consume --http-addr` serves /healthz, /readyz and /metrics, and /metrics
// carries the Kafka client metrics of the consumer (fetches) and of the
// audit relay (produces), which move with the traffic.
func TestConsumeServesHealthAndKafkaClientMetrics(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := topics.Ensure(ctx, adm, topics.Config{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
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

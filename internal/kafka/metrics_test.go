package kafka

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/hookstream/hookstream/internal/metricstest"
)

// A client built with Metrics exports kprom's metrics under hookstream_ on
// the registry /metrics serves, labelled with its client id; they move
// with traffic and go away when the client closes. A second open client
// with the same id does not panic.
func TestMetricsExportClientMetricsOnTheDefaultRegistry(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "metrics-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	srv := httptest.NewServer(promhttp.Handler())
	defer srv.Close()
	const id = `client_id="kafka-metrics-test"`

	if _, found := metricstest.Scrape(t, srv.URL, "hookstream_produce_records_total", id); found {
		t.Fatal("metrics of a client that does not exist yet")
	}
	cl, err := NewProducer(Config{Brokers: cluster.ListenAddrs(), ClientID: "kafka-metrics-test", Metrics: true})
	if err != nil {
		t.Fatal(err)
	}
	twin, err := NewProducer(Config{Brokers: cluster.ListenAddrs(), ClientID: "kafka-metrics-test", Metrics: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 5
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "metrics-test", Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// franz-go runs the hook that counts a written batch on a goroutine of
	// its own, after or before the record's promise: the count reaches n
	// shortly after the last ProduceSync, not necessarily at its return.
	for {
		got, _ := metricstest.Scrape(t, srv.URL, "hookstream_produce_records_total", id, `topic="metrics-test"`)
		if got == n {
			break
		}
		if got > n || ctx.Err() != nil {
			t.Fatalf("hookstream_produce_records_total = %v, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond) // the hook signals nothing to wait on
	}
	if got, _ := metricstest.Scrape(t, srv.URL, "hookstream_connects_total", id); got < 1 {
		t.Errorf("hookstream_connects_total = %v, want at least 1", got)
	}
	// The twin registered nothing; closing it leaves the first's metrics.
	twin.Close()
	if _, found := metricstest.Scrape(t, srv.URL, "hookstream_produce_records_total", id); !found {
		t.Error("closing a second client with the same id removed the first's metrics")
	}
	cl.Close()
	if _, found := metricstest.Scrape(t, srv.URL, "hookstream_produce_records_total", id); found {
		t.Error("metrics of a closed client are still exported")
	}
}

// BenchmarkMetricsHooks is what the kprom hooks cost a producer for one
// produce request carrying one batch (BENCHMARKS.md, receiver section).
func BenchmarkMetricsHooks(b *testing.B) {
	hooks := kprom.NewMetrics("bench", kprom.WithClientLabel(),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes))
	cl, err := kgo.NewClient(kgo.WithHooks(hooks), kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	meta := kgo.BrokerMetadata{NodeID: 0, Host: "127.0.0.1", Port: 9092}
	b.ReportAllocs()
	for b.Loop() {
		hooks.OnProduceBatchWritten(meta, "hookstream.events", 0, kgo.ProduceBatchMetrics{NumRecords: 4, UncompressedBytes: 4000})
		hooks.OnBrokerE2E(meta, 0, kgo.BrokerE2E{BytesWritten: 4000, BytesRead: 100})
	}
}

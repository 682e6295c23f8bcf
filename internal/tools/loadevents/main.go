// Command loadevents writes events straight into hookstream.events, with
// the headers the receiver sets, and then waits until PostgreSQL says all of
// them are PROCESSED, printing the consumer's throughput. It measures the
// consumer alone (scripts/bench-consume.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/wire"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka seed brokers")
	dbURL := flag.String("database-url", "", "PostgreSQL URL")
	n := flag.Int("events", 100000, "events to write")
	customers := flag.Int("customers", 1000, "distinct customers")
	rate := flag.Float64("rate", 0, "events per second, each stamped with its own received-at (0: all at once, stamped with the start)")
	run := flag.String("run", strconv.FormatInt(time.Now().Unix(), 10), "event id prefix (distinct per run)")
	flag.Parse()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *dbURL)
	if err != nil {
		log.Fatal(err)
	}
	// A backlog of up to millions waits in the buffer for a slow cluster: no
	// 5 s delivery timeout (the receiver's) for a loader.
	prod, err := kafka.NewProducer(kafka.Config{Brokers: kafka.ParseBrokers(*brokers), ProduceTimeout: 10 * time.Minute}, kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	// Stamped as the receiver stamps a new event (ingest/bucket.go): the
	// current bucket, read before any of these events is looked up.
	var bucket int
	if err := pool.QueryRow(ctx, `SELECT bucket FROM event_clock`).Scan(&bucket); err != nil {
		log.Fatal(err)
	}
	floor := []byte(strconv.Itoa(bucket))
	start := time.Now()
	// This run's rows, found through (status, updated_at): a table of
	// millions of rows (scripts/bench-scale.sh) is not counted whole.
	const ours = `status = 'PROCESSED' AND updated_at >= $1 AND event_id LIKE $2 || '-%'`
	since := start.Add(-time.Second)
	now := []byte(start.UTC().Format(time.RFC3339Nano))
	for i := range *n {
		if *rate > 0 {
			// Open loop: event i is due at start + i/rate, whatever the
			// consumer does meanwhile.
			if d := time.Until(start.Add(time.Duration(float64(i) / *rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
			now = []byte(time.Now().UTC().Format(time.RFC3339Nano))
		}
		cust := "cus_" + strconv.Itoa(i%*customers)
		id := *run + "-" + strconv.Itoa(i)
		prod.Produce(ctx, &kgo.Record{Topic: wire.DefaultEventsTopic, Key: []byte(cust),
			Value: []byte(`{"event_id":"` + id + `","customer_id":"` + cust + `","event_type":"bench","payload":{}}`),
			Headers: []kgo.RecordHeader{
				{Key: wire.HeaderEventID, Value: []byte(id)}, {Key: wire.HeaderSource, Value: []byte("generic")},
				{Key: wire.HeaderCustomerID, Value: []byte(cust)}, {Key: wire.HeaderEventType, Value: []byte("bench")},
				{Key: wire.HeaderReceivedAt, Value: now}, {Key: wire.HeaderBucket, Value: floor},
			}}, func(_ *kgo.Record, err error) {
			if err != nil {
				log.Fatal(err)
			}
		})
	}
	if err := prod.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	produced := time.Since(start)
	for {
		var done int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE `+ours, since, *run).Scan(&done); err != nil {
			log.Fatal(err)
		}
		if done >= *n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	el := time.Since(start)
	// The audit trail is part of the work: wait until the relay has
	// published every row.
	for {
		left, err := audit.Unpublished(ctx, pool)
		if err != nil {
			log.Fatal(err)
		}
		if left == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	audited := time.Since(start)
	var p50, p90, p99, p999, mx float64
	if err := pool.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.9) WITHIN GROUP (ORDER BY d),
  percentile_cont(0.99) WITHIN GROUP (ORDER BY d), percentile_cont(0.999) WITHIN GROUP (ORDER BY d), max(d)
FROM (SELECT extract(epoch FROM processed_at - received_at) * 1000 AS d FROM events WHERE `+ours+`) x`, since, *run).Scan(&p50, &p90, &p99, &p999, &mx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("produced->PROCESSED ms: p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f\n", p50, p90, p99, p999, mx)
	fmt.Printf("events=%d customers=%d produced_in=%s processed_in=%s audit_published_in=%s events_per_second=%.0f (to PROCESSED) %.0f (to audit published)\n",
		*n, *customers, produced.Round(time.Millisecond), el.Round(time.Millisecond), audited.Round(time.Millisecond), float64(*n)/el.Seconds(), float64(*n)/audited.Seconds())
}

package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/testenv"
)

type overviewAnswer struct {
	Rates *struct {
		Minutes []struct {
			Accepted float64 `json:"accepted"`
		} `json:"minutes"`
	} `json:"rates"`
	ConsumerLag []struct {
		Group      string `json:"group"`
		Partition  int32  `json:"partition"`
		NextOffset *int64 `json:"next_offset"`
		EndOffset  *int64 `json:"end_offset"`
		Lag        *int64 `json:"lag"`
	} `json:"consumer_lag"`
	Customers  map[string]int64 `json:"customers"`
	AuditRelay *struct {
		PendingCommits int64 `json:"pending_commits"`
	} `json:"audit_relay"`
	Ready map[string]string `json:"ready"`
}

func (tb *testBundle) overview() overviewAnswer {
	tb.t.Helper()
	rec := tb.get("/admin/overview")
	if rec.Code != http.StatusOK {
		tb.t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var o overviewAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &o); err != nil {
		tb.t.Fatal(err)
	}
	return o
}

// TestOverview: the customers in trouble by state, each stored consumer
// offset with the partition's end and the lag between, the relay's
// backlog, the process's per-minute counts, and both dependencies ready.
func TestOverview(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topics := testenv.TopicsN(t, brokers, 2)
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookstream_ingest_requests_total"}, []string{"source", "status"})
	reg.MustRegister(requests)
	rates := admin.NewRateSampler(reg, time.Now())
	tb := setup(t, admin.Config{Brokers: brokers, EventsTopic: topics.Events, Rates: rates}, true)
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition, next_attempt_at) VALUES
  ('generic', 'c1', 'PARKED', 'e1', 0, NULL), ('generic', 'c2', 'BLOCKED', 'e2', 0, now()), ('generic', 'c3', 'BLOCKED', 'e3', 1, now())`)
	tb.exec(`INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ('g', $1, 0, 1), ('g', $1, 1, -1)`, topics.Events)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for range 3 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topics.Events, Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	requests.WithLabelValues("generic", "202").Add(4)
	if err := rates.Sample(time.Now()); err != nil {
		t.Fatal(err)
	}
	o := tb.overview()
	if o.Customers["PARKED"] != 1 || o.Customers["BLOCKED"] != 2 || o.Customers["DRAINING"] != 0 {
		t.Errorf("customers %v", o.Customers)
	}
	if o.Ready["postgres"] != "ok" || o.Ready["kafka"] != "ok" {
		t.Errorf("ready %v", o.Ready)
	}
	if o.AuditRelay == nil || o.AuditRelay.PendingCommits != 0 {
		t.Errorf("relay %+v", o.AuditRelay)
	}
	if len(o.ConsumerLag) != 2 {
		t.Fatalf("lag %+v", o.ConsumerLag)
	}
	// Produced with the default partitioner: the records may be in either
	// partition; the lags add up to what was produced less what was read.
	var lag int64
	for _, l := range o.ConsumerLag {
		from := int64(0) // partition 1 has no stored position (-1): from the start
		if l.Partition == 0 {
			from = 1
			if l.NextOffset == nil || *l.NextOffset != 1 {
				t.Fatalf("partition 0: %+v", l)
			}
		} else if l.NextOffset != nil {
			t.Fatalf("partition 1 has no position, shown as %d", *l.NextOffset)
		}
		if l.EndOffset == nil || l.Lag == nil || *l.Lag != max(*l.EndOffset-from, 0) {
			t.Fatalf("lag %+v", l)
		}
		lag += *l.Lag
	}
	if lag != 2 && lag != 3 {
		t.Errorf("total lag %d, want 2 (3 produced, 1 read of partition 0) or 3", lag)
	}
	if o.Rates == nil || len(o.Rates.Minutes) != 60 || o.Rates.Minutes[59].Accepted != 4 {
		t.Errorf("rates %+v", o.Rates)
	}
}

// TestOverviewKafkaUnavailable: without an answer from Kafka the overview
// says so and still shows the stored offsets, without end or lag.
func TestOverviewKafkaUnavailable(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{Brokers: []string{"127.0.0.1:1"}}, true)
	tb.exec(`INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ('g', 'hookstream.events', 0, 5)`)
	o := tb.overview()
	if o.Ready["kafka"] != "unavailable" || o.Ready["postgres"] != "ok" || o.Rates != nil {
		t.Errorf("%+v", o)
	}
	if len(o.ConsumerLag) != 1 || o.ConsumerLag[0].NextOffset == nil || *o.ConsumerLag[0].NextOffset != 5 || o.ConsumerLag[0].Lag != nil {
		t.Errorf("lag %+v", o.ConsumerLag)
	}
}

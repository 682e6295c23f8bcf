package admin_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookstream/hookstream/internal/admin"
)

// TestRateSamplerMinutes: a minute's count is the growth of the counters
// from the last sample of the minute before to its own last sample; a
// minute without a sample counts nothing; 202 answers to duplicates of
// events in flight are duplicates, not acceptances.
func TestRateSamplerMinutes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookstream_ingest_requests_total"}, []string{"source", "status"})
	dups := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookstream_ingest_duplicates_total"}, []string{"source", "kind"})
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookstream_consumer_events_total"}, []string{"source", "outcome"})
	reg.MustRegister(requests, dups, outcomes)
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	s := admin.NewRateSampler(reg, t0)
	sample := func(at time.Time) {
		if err := s.Sample(at); err != nil {
			t.Fatal(err)
		}
	}
	sample(t0.Add(5 * time.Second)) // 10:00: nothing yet
	requests.WithLabelValues("generic", "202").Add(5)
	dups.WithLabelValues("generic", "in_flight").Add(1)
	outcomes.WithLabelValues("generic", "processed").Add(3)
	sample(t0.Add(50 * time.Second)) // 10:00: 4 accepted, 1 duplicate, 3 processed
	requests.WithLabelValues("generic", "202").Add(2)
	outcomes.WithLabelValues("generic", "dead").Add(1)
	sample(t0.Add(3*time.Minute + time.Second)) // 10:03: 2 accepted, 1 dead
	minutes, since := s.Minutes(t0.Add(3*time.Minute + 30*time.Second))
	if len(minutes) != 60 || !since.Equal(t0) {
		t.Fatalf("%d minutes since %v", len(minutes), since)
	}
	last := minutes[59]
	if !last.Start.Equal(t0.Add(3*time.Minute)) || last.Accepted != 2 || last.Dead != 1 || last.Processed != 0 {
		t.Errorf("10:03: %+v", last)
	}
	if m := minutes[56]; !m.Start.Equal(t0) || m.Accepted != 4 || m.Duplicate != 1 || m.Processed != 3 {
		t.Errorf("10:00: %+v", m)
	}
	for _, i := range []int{57, 58, 0} {
		if m := minutes[i]; m.Accepted+m.Duplicate+m.Processed+m.Dead != 0 {
			t.Errorf("minute %d without samples: %+v", i, m)
		}
	}
	// An hour later 10:03 is before the window: the next minute's count
	// starts from its totals.
	requests.WithLabelValues("generic", "202").Add(7)
	sample(t0.Add(65 * time.Minute))
	minutes, _ = s.Minutes(t0.Add(65 * time.Minute))
	if m := minutes[59]; m.Accepted != 7 {
		t.Errorf("11:05: %+v", m)
	}
	// A sample between a duplicate's two counters (in flight, then its
	// 202) shows no negative acceptance.
	dups.WithLabelValues("generic", "in_flight").Add(1)
	sample(t0.Add(66 * time.Minute))
	requests.WithLabelValues("generic", "202").Add(1)
	sample(t0.Add(67 * time.Minute))
	minutes, _ = s.Minutes(t0.Add(67 * time.Minute))
	if m := minutes[58]; m.Accepted != 0 || m.Duplicate != 1 {
		t.Errorf("11:06: %+v", m)
	}
}

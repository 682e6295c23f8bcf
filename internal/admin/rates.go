package admin

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Counts are decisions of one minute (or totals since the process
// started), by outcome.
type Counts struct {
	// Accepted: 202 answers, less the duplicates of events still in
	// flight (answered 202 too). With a source's duplicate_status 202,
	// its other duplicates are in Accepted as well as in Duplicate.
	Accepted  float64 `json:"accepted"`
	Rejected  float64 `json:"rejected"`
	Duplicate float64 `json:"duplicate"`
	Processed float64 `json:"processed"`
	Failed    float64 `json:"failed"`
	Dead      float64 `json:"dead"`
}

func (c Counts) minus(o Counts) Counts {
	return Counts{c.Accepted - o.Accepted, c.Rejected - o.Rejected, c.Duplicate - o.Duplicate,
		c.Processed - o.Processed, c.Failed - o.Failed, c.Dead - o.Dead}
}

func (c Counts) nonNegative() Counts {
	return Counts{max(c.Accepted, 0), max(c.Rejected, 0), max(c.Duplicate, 0), max(c.Processed, 0), max(c.Failed, 0), max(c.Dead, 0)}
}

// Minute is the decisions of the minute starting at Start.
type Minute struct {
	Start time.Time `json:"start"`
	Counts
}

// RateSampler keeps per-minute counts of the process's own decisions,
// read from its Prometheus counters: the receiver's answers
// (hookstream_ingest_*) and, where the consumer runs in the same process
// (dev), its outcomes (hookstream_consumer_events_total). Counters only
// grow within a process, so a minute's count is the difference of the
// last totals seen in it and in the minute before. Why the process's
// counters and not the tables: the receiver's decisions reach audit_log
// only through the sink, and counting an hour of audit_log by time every
// few seconds is a scan of a table that has no index on it.
type RateSampler struct {
	gather prometheus.Gatherer
	since  time.Time

	mu   sync.Mutex
	last map[int64]Counts // minute (Unix seconds of its start) -> last totals seen
}

// NewRateSampler samples g (the default registry in a process); its
// counters must have started with the process, which is the zero totals
// before the first sample.
func NewRateSampler(g prometheus.Gatherer, now time.Time) *RateSampler {
	return &RateSampler{gather: g, since: now, last: map[int64]Counts{}}
}

// Run samples every 10 s until ctx ends.
func (s *RateSampler) Run(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		_ = s.Sample(time.Now()) // a failed gather leaves a gap, filled by the next
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads the counters now.
func (s *RateSampler) Sample(now time.Time) error {
	mfs, err := s.gather.Gather()
	if err != nil {
		return err
	}
	c := totals(mfs)
	minute := now.Truncate(time.Minute).Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last[minute] = c
	for m := range s.last {
		if m < minute-int64(2*time.Hour/time.Second) {
			delete(s.last, m)
		}
	}
	return nil
}

// Minutes are the 60 minutes up to now's, oldest first, and since when
// the process has counted.
func (s *RateSampler) Minutes(now time.Time) ([]Minute, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := now.Truncate(time.Minute)
	start := end.Add(-59 * time.Minute)
	prev, prevMinute := Counts{}, int64(0)
	for m, c := range s.last { // the latest totals before the window
		if m < start.Unix() && m > prevMinute {
			prev, prevMinute = c, m
		}
	}
	out := make([]Minute, 0, 60)
	for t := start; !t.After(end); t = t.Add(time.Minute) {
		m := Minute{Start: t.UTC()}
		if c, ok := s.last[t.Unix()]; ok {
			// A sample can fall between a duplicate's two counters (in
			// flight, then 202), which moves one acceptance across a
			// minute's edge: never shown as a negative count.
			m.Counts, prev = c.minus(prev).nonNegative(), c
		}
		out = append(out, m)
	}
	return out, s.since
}

// totals sums the counters the overview shows.
func totals(mfs []*dto.MetricFamily) Counts {
	var c, inFlight Counts
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v, label := m.GetCounter().GetValue(), labels(m)
			switch mf.GetName() {
			case "hookstream_ingest_requests_total":
				if label["status"] == "202" {
					c.Accepted += v
				}
			case "hookstream_ingest_rejections_total":
				c.Rejected += v
			case "hookstream_ingest_duplicates_total":
				switch label["kind"] {
				case "in_flight":
					inFlight.Accepted += v
					c.Duplicate += v
				case "duplicate", "replayed_body":
					c.Duplicate += v
				}
			case "hookstream_consumer_events_total":
				switch label["outcome"] {
				case "processed":
					c.Processed += v
				case "failed":
					c.Failed += v
				case "dead":
					c.Dead += v
				}
			}
		}
	}
	return c.minus(inFlight)
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

package console_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/testenv"
)

// TestOverviewPage: the overview shows what GET /admin/overview answers:
// readiness, the customers in trouble by state, each partition's lag and
// the per-minute counts with their charts, and refreshes itself.
func TestOverviewPage(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topics := testenv.TopicsN(t, brokers, 2)
	reg := prometheus.NewRegistry()
	processed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookstream_consumer_events_total"}, []string{"source", "outcome"})
	reg.MustRegister(processed)
	rates := admin.NewRateSampler(reg, time.Now())
	tb := setup(t, admin.Config{Brokers: brokers, EventsTopic: topics.Events, Rates: rates})
	tb.exec(`INSERT INTO customer_blocks (source, customer_id, state, blocking_event_id, kafka_partition) VALUES
  ('generic', 'c1', 'PARKED', 'e1', 0), ('generic', 'c2', 'PARKED', 'e2', 0)`)
	// A decision the relay has not published yet, a minute and a half old.
	tb.exec(`INSERT INTO audit_log (audit_id, action, actor, instance, at) VALUES (gen_random_uuid(), 'ACCEPTED', 'ingest', 'x', now() - interval '90 seconds')`)
	tb.exec(`INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ('hookstream', $1, 1, 0)`, topics.Events)
	processed.WithLabelValues("generic", "processed").Add(7)
	if err := rates.Sample(time.Now()); err != nil {
		t.Fatal(err)
	}
	b := tb.browser("192.0.2.50:1")
	b.login()
	page := b.do("GET", "/console/overview", nil).Body.String()
	for _, want := range []string{
		`hx-trigger="every 5s"`,
		`<div class="label">PostgreSQL</div><div class="value status status-processed">ok</div>`,
		`<div class="label">Kafka</div><div class="value status status-processed">ok</div>`,
		`<div class="label">Parked customers</div><div class="value num">2</div>`,
		`<tr class="rate-processed">`, `<td class="num total">7</td>`, `<td class="num last">7</td>`,
		`<tr data-partition="1">`, `<td class="num lag">0</td>`,
		`<span class="relay-pending">1</span> commit(s), oldest 9`, // 90.x s
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %s", want)
		}
	}
	if strings.Contains(page, "%!") {
		t.Errorf("a value the template could not format: %s", page[strings.Index(page, "%!"):][:60])
	}
	if n := strings.Count(page, "<rect "); n != 6*60 {
		t.Errorf("%d bars, want 6 charts of 60", n)
	}
	if !strings.Contains(strings.Join(tb.called(), " "), "getOverview") {
		t.Errorf("calls: %v", tb.called())
	}
}

package ingest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestRejectionFloodIsSummarized: 200 unsigned POSTs to a source and 200
// to as many unknown source names are all answered and counted, but write
// only a bounded number of audit records: the first ones of each (source,
// reason) alone, the rest as one summary record each (count, first and
// last seen, sample request ids), while signed requests' rejections keep
// a record each. No unknown name becomes a record's key
// or source, nor a metric label. (Before, each of the 400 was a record and
// an audit_log row of its own.)
func TestRejectionFloodIsSummarized(t *testing.T) {
	t.Parallel()
	const flood, burst = 200, 3
	tb := setup(t, func(o *setupOpts) {
		o.configure = func(c *ingest.Config) {
			c.RejectionAudit = ingest.RejectionAuditConfig{PerSecond: 0.001, Burst: burst, Interval: time.Hour}
			c.PreAuth = ingest.PreAuthConfig{Burst: 10 * flood} // every one of them reaches the signature
		}
	})
	body := genericBody("evt_x", "cus_x")
	for i := range flood {
		if status, _, _ := tb.post("/webhooks/generic", jsonHeaders(), body); status != http.StatusUnauthorized {
			t.Fatalf("unsigned %d: status %d, want 401", i, status)
		}
		if status, _, _ := tb.post("/webhooks/junk-"+uuid.NewString(), jsonHeaders(), body); status != http.StatusNotFound {
			t.Fatalf("unknown source %d: status %d, want 404", i, status)
		}
	}
	// Signed requests are not anonymous: each rejection keeps its record.
	const signedBad = 2 * burst
	for range signedBad {
		bad := []byte(`{"event_id":"evt_s","customer_id":"cus_s","event_type":"t","payload":"not an object"}`)
		if status, _, out := tb.post("/webhooks/generic", signedGeneric(bad), bad); status != http.StatusBadRequest {
			t.Fatalf("signed schema violation: status %d %s, want 400", status, out)
		}
	}
	tb.rcv.Close() // writes the summaries the hour-long interval holds

	type pair struct{ source, reason string }
	alone := map[pair]int{}
	summarized := map[pair]int{}
	var records []wire.AuditRecord
	deadline := time.Now().Add(20 * time.Second)
	for {
		records = tb.audits()
		clear(alone)
		clear(summarized)
		for _, a := range records {
			p := pair{a.Source, a.Reason}
			if sum, ok := a.Detail[wire.DetailSummary].(map[string]any); ok {
				summarized[p] += int(sum["count"].(float64))
			} else {
				alone[p]++
			}
		}
		if alone[pair{"generic", ingest.CodeSignatureInvalid}]+summarized[pair{"generic", ingest.CodeSignatureInvalid}] == flood &&
			alone[pair{"", ingest.CodeUnknownSource}]+summarized[pair{"", ingest.CodeUnknownSource}] == flood {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records alone %v, summarized %v: want %d rejections of each pair accounted for", alone, summarized, flood)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(records) != 2*(burst+1)+signedBad {
		t.Errorf("%d audit records for %d anonymous and %d signed rejections, want %d: %d alone and one summary per (source, reason), and one per signed request",
			len(records), 2*flood, signedBad, 2*(burst+1)+signedBad, burst)
	}
	if n := alone[pair{"generic", ingest.CodeSchemaViolation}]; n != signedBad {
		t.Errorf("%d records of signed requests' schema violations, want %d", n, signedBad)
	}
	for _, a := range records {
		if strings.Contains(a.Source, "junk") || strings.Contains(a.RequestID, "junk") {
			t.Errorf("an unknown name became part of the record %+v", a)
		}
		sum, ok := a.Detail[wire.DetailSummary].(map[string]any)
		if !ok {
			continue
		}
		ids, _ := sum["sample_request_ids"].([]any)
		if sum["count"] != float64(flood-burst) || len(ids) != 5 || a.HTTPStatus == 0 || a.EventID != "" {
			t.Errorf("summary %+v, want %d rejections with 5 sample request ids", a, flood-burst)
		}
		for _, id := range ids {
			if _, err := uuid.Parse(id.(string)); err != nil {
				t.Errorf("sample %v is not a request id of the server's", id)
			}
		}
		first, err1 := time.Parse(time.RFC3339Nano, sum["first_seen"].(string))
		last, err2 := time.Parse(time.RFC3339Nano, sum["last_seen"].(string))
		if err1 != nil || err2 != nil || last.Before(first) {
			t.Errorf("summary seen from %v to %v (%v, %v)", sum["first_seen"], sum["last_seen"], err1, err2)
		}
	}
	for _, r := range tb.records(tb.topics.Audit) {
		if strings.Contains(string(r.Key), "junk") {
			t.Errorf("audit key %q holds an unknown name", r.Key)
		}
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "junk") {
					t.Errorf("metric %s has the label %s=%q", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

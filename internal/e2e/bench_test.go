package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/loadgen"
)

// TestBenchVerify: what `hookstream bench --verify` does, against the whole
// stack: a load with duplicates and bad requests verifies clean, and a
// tampered outcome is reported.
func TestBenchVerify(t *testing.T) {
	t.Parallel()
	st := start(t, consumer.NoopHandler, consumer.RetryPolicy{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	since := time.Now()
	sum, err := loadgen.Run(ctx, loadgen.Config{Target: st.url, Secret: secret, Customers: 20, Events: 600,
		Concurrency: 8, Duplicates: 0.1, Bad: 0.05, PayloadBytes: 16, RunID: "bv"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Requests != 600 || sum.StatusCounts["202"] == 0 || sum.StatusCounts["401"]+sum.StatusCounts["400"] == 0 {
		t.Fatalf("summary: %d requests, statuses %v", sum.Requests, sum.StatusCounts)
	}
	cfg := loadgen.VerifyConfig{Pool: st.pool, Brokers: st.brokers, AuditTopic: st.topics.Audit, EventsTopic: st.topics.Events, Group: st.group,
		Source: "generic", Wait: 2 * time.Minute, Since: since}
	v, err := loadgen.Verify(ctx, cfg, sum)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK || len(v.Violations) != 0 {
		t.Fatalf("verify: %+v", v)
	}
	if v.Accepted == 0 || v.Processed != v.Accepted || v.Rejected == 0 {
		t.Fatalf("verify counts: accepted %d processed %d rejected %d", v.Accepted, v.Processed, v.Rejected)
	}
	if v.Audit.TopicRecords == 0 || v.Audit.TopicRecords != v.Audit.TableRecords {
		t.Fatalf("audit: topic %d, table %d", v.Audit.TopicRecords, v.Audit.TableRecords)
	}
	if v.EndToEndMs.P50 <= 0 || v.EndToEndMs.Max < v.EndToEndMs.P99 {
		t.Fatalf("end-to-end percentiles %+v", v.EndToEndMs)
	}

	// One accepted event put back to FAILED: verify must name it.
	var victim string
	for _, s := range sum.Sent {
		if s.Status == 202 && s.Kind == "new" {
			victim = s.EventID
			break
		}
	}
	if _, err := st.pool.Exec(ctx, `UPDATE events SET status = 'FAILED' WHERE source = 'generic' AND event_id = $1`, victim); err != nil {
		t.Fatal(err)
	}
	cfg.Wait = time.Millisecond
	v, err = loadgen.Verify(ctx, cfg, sum)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK || len(v.Violations) != 1 || !strings.Contains(v.Violations[0], victim) || !strings.Contains(v.Violations[0], "not PROCESSED") {
		t.Fatalf("after tampering: ok=%v violations %q, want one naming %s", v.OK, v.Violations, victim)
	}
}

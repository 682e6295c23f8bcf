package ingest_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestBrokerOutage stops the broker: requests get 503 with Retry-After and
// never a 2xx; once the broker is back, requests are accepted again and
// exactly the accepted events are in the topic.
//
// It uses a private broker because the test stops and restarts it: kfake,
// closed and started again, or with HOOKSTREAM_TEST_KAFKA=apache a
// one-node Apache Kafka cluster, its node killed (SIGKILL) and started
// again with its data.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t)
	tb := setup(t, func(o *setupOpts) {
		o.brokers = broker.Addrs()
		o.produceTimeout = 1500 * time.Millisecond
	})

	before := genericBody("evt_before", "cus_o")
	if status, _, out := tb.post("/webhooks/generic", signedGeneric(before), before); status != http.StatusAccepted {
		t.Fatalf("before the outage: %d %s", status, out)
	}

	broker.Stop()
	for i := range 3 {
		body := genericBody("evt_during_"+strconv.Itoa(i), "cus_o")
		start := time.Now()
		status, h, out := tb.post("/webhooks/generic", signedGeneric(body), body)
		if status != http.StatusServiceUnavailable {
			t.Fatalf("during the outage: status %d (%s), want 503", status, out)
		}
		if eb := decodeError(t, out); eb.Error.Code != ingest.CodeUnavailable {
			t.Errorf("code %q", eb.Error.Code)
		}
		if h.Get("Retry-After") != "3" {
			t.Errorf("Retry-After %q, want 3", h.Get("Retry-After"))
		}
		// Bounded: the produce timeout plus the audit attempt, never a hang.
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("503 took %s", d)
		}
	}

	broker.Start()
	// The client reconnects on its own; requests that still find it
	// reconnecting get 503 and the provider would retry, as we do here.
	deadline := time.Now().Add(60 * time.Second)
	after := genericBody("evt_after", "cus_o")
	for {
		status, _, out := tb.post("/webhooks/generic", signedGeneric(after), after)
		if status == http.StatusAccepted {
			break
		}
		if status != http.StatusServiceUnavailable {
			t.Fatalf("after the outage: status %d %s", status, out)
		}
		if time.Now().After(deadline) {
			t.Fatal("not accepting 60s after the broker came back")
		}
	}

	got := map[string]int{}
	for _, r := range tb.events() {
		got[header(r, "event-id")]++
	}
	if got["evt_before"] != 1 || got["evt_after"] < 1 {
		t.Errorf("events after recovery: %v", got)
	}
	// A 503 means not stored: a 503'd event may only be there if its
	// produce outlived the wait (an ambiguous outcome the consumer dedupes);
	// with the broker down for the whole wait, none can be.
	for i := range 3 {
		if n := got["evt_during_"+strconv.Itoa(i)]; n != 0 {
			t.Errorf("evt_during_%d was answered 503 but is in the topic %d times", i, n)
		}
	}
}

// TestDuplicateCheckUnavailable: with PostgreSQL unreachable the receiver
// still accepts (the event is durable in Kafka and the consumer's claim
// dedupes it) and says so in the audit record.
func TestDuplicateCheckUnavailable(t *testing.T) {
	t.Parallel()
	tb := setup(t, func(o *setupOpts) {
		// Nothing listens on port 1: every connection is refused at once.
		o.databaseURL = "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
	})
	body := genericBody("evt_nodb", "cus_n")
	h := signedGeneric(body)
	h.Set("X-Request-Id", "req-nodb")
	if status, _, out := tb.post("/webhooks/generic", h, body); status != http.StatusAccepted {
		t.Fatalf("status %d %s, want 202", status, out)
	}
	if n := len(tb.events()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	a := tb.decisionsFor("req-nodb")
	if len(a) != 1 || a[0].Action != wire.ActionAccepted || a[0].Detail["duplicate_check"] != "unavailable" {
		t.Errorf("decision %+v, want ACCEPTED with detail duplicate_check=unavailable", a)
	}
}

// TestAuditTopicUnavailable: with the audit topic unavailable (never
// created) while the events topic is fine, no 2xx or 409 goes out without
// a durable decision. A new event is still answered 202: its decision
// travels in the event record. A duplicate's decision has no event to
// travel with, so it is answered 503 with Retry-After instead of its 409
// or 202. A rejection is answered as ever (its record is best effort) and
// the lost record is counted.
func TestAuditTopicUnavailable(t *testing.T) {
	t.Parallel()
	tb := setup(t, func(o *setupOpts) {
		o.produceTimeout = 1500 * time.Millisecond
		o.noAuditTopic = true
	})
	body := genericBody("evt_new", "cus_a")
	if status, _, out := tb.post("/webhooks/generic", signedGeneric(body), body); status != http.StatusAccepted {
		t.Fatalf("new event: status %d %s, want 202", status, out)
	}
	recs := tb.events()
	if len(recs) != 1 {
		t.Fatalf("%d events, want 1", len(recs))
	}
	if a := tb.decision(recs[0]); a.Action != wire.ActionAccepted || a.EventID != "evt_new" {
		t.Errorf("the event carries %+v, want its ACCEPTED decision", a)
	}

	tb.setStatus("generic", "evt_done", ingest.StatusProcessed)
	tb.setStatus("generic", "evt_busy", ingest.StatusProcessing)
	for _, id := range []string{"evt_done", "evt_busy"} {
		body := genericBody(id, "cus_a")
		status, h, out := tb.post("/webhooks/generic", signedGeneric(body), body)
		if status != http.StatusServiceUnavailable {
			t.Errorf("duplicate %s: status %d %s, want 503", id, status, out)
			continue
		}
		if eb := decodeError(t, out); eb.Error.Code != ingest.CodeUnavailable || h.Get("Retry-After") != "3" {
			t.Errorf("duplicate %s: code %q, Retry-After %q", id, eb.Error.Code, h.Get("Retry-After"))
		}
	}

	failures := func() float64 {
		return counter(t, "hookstream_ingest_audit_publish_failures_total", map[string]string{"kind": "rejected"})
	}
	before := failures()
	if status, _, out := tb.post("/webhooks/generic", jsonHeaders(), body); status != http.StatusUnauthorized {
		t.Errorf("unsigned: status %d %s, want 401", status, out)
	}
	// The rejection waits for its record's outcome before it answers.
	if got := failures() - before; got < 1 {
		t.Errorf("audit failures of rejections rose by %v, want at least 1", got)
	}
	if n := len(tb.events()); n != 1 {
		t.Errorf("%d events, want only the new one", n)
	}
}

// TestRejectionRecordOutlivesOutage: a request rejected while the broker
// is away is answered within the produce timeout, and its REJECTED record,
// given up by then in the old design, lands once the broker is back, as
// long as that is within the rejection producer's delivery timeout. A
// leader's fail-over on a real cluster takes longer than the produce
// timeout, and lost every rejection record of the requests it caught.
func TestRejectionRecordOutlivesOutage(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t)
	tb := setup(t, func(o *setupOpts) {
		o.brokers = broker.Addrs()
		o.produceTimeout = time.Second
		o.rejectionTimeout = 2 * time.Minute
	})
	broker.Stop()
	body := genericBody("evt_forged", "cus_r")
	h := jsonHeaders("X-Signature", strings.Repeat("0", 64), "X-Request-Id", "rejected-in-outage")
	if status, _, out := tb.post("/webhooks/generic", h, body); status != http.StatusUnauthorized {
		t.Fatalf("bad signature during the outage: %d %s", status, out)
	}
	// The answer waited the produce timeout for the record: the outage
	// has outlasted it.
	broker.Start()
	deadline := time.Now().Add(time.Minute)
	for {
		recs := tb.auditFor("rejected-in-outage")
		if len(recs) == 1 && recs[0].Action == wire.ActionRejected && recs[0].HTTPStatus == http.StatusUnauthorized {
			return
		}
		if len(recs) > 1 || time.Now().After(deadline) {
			t.Fatalf("the REJECTED record of a request answered during the outage: %+v", recs)
		}
		time.Sleep(200 * time.Millisecond) // polling for the record to land
	}
}

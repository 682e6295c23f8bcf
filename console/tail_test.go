package console_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestLiveTail: the tail's page names its stream with the page's filter
// and loads tail.js; the stream relays the admin API's audit stream with
// that filter and the browser's Last-Event-ID (here: the start of the
// topic, so the records produced before are sent), and ends after
// TailDuration.
func TestLiveTail(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topics := testenv.TopicsN(t, brokers, 2)
	tb := setup(t, admin.Config{Brokers: brokers, AuditTopic: topics.Audit})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for _, customer := range []string{"cus_tail", "cus_other"} {
		r := &wire.AuditRecord{SchemaVersion: wire.AuditSchemaVersion, AuditID: uuid.NewString(), EventID: "evt_" + customer,
			Source: "generic", CustomerID: customer, Action: wire.ActionAccepted, Actor: wire.ActorIngest, Instance: "test", At: time.Now().UTC()}
		kr, err := r.KafkaRecord(topics.Audit)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(context.Background(), kr).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	b := tb.browser("192.0.2.40:1")
	b.login()
	page := b.do("GET", "/console/tail?customer_id=cus_tail", nil).Body.String()
	if !strings.Contains(page, `data-stream="/console/tail/stream?customer_id=cus_tail"`) || !strings.Contains(page, `src="/console/static/tail.js"`) {
		t.Fatalf("tail page:\n%s", page)
	}
	start := time.Now()
	rec := b.do("GET", "/console/tail/stream?customer_id=cus_tail", nil, "Last-Event-ID", "0:0,1:0")
	body := rec.Body.String()
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/event-stream" || !strings.Contains(body, "event: ready") ||
		!strings.Contains(body, `"customer_id":"cus_tail"`) || strings.Contains(body, "cus_other") || !strings.Contains(body, `"reason":"max_seconds"`) {
		t.Fatalf("stream: %d %v\n%s", rec.Code, rec.Header(), body)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the stream lasted %v, TailDuration is 2s", d)
	}
	if !strings.Contains(strings.Join(tb.called(), " "), "streamAudit") {
		t.Errorf("calls: %v", tb.called())
	}
}

package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

type sseEvent struct{ event, id, data string }

// stream is an open GET /admin/audit/stream, read event by event.
type stream struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
}

func openStream(t *testing.T, base, query string, header ...string) *stream {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/admin/audit/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream %s: %d %v", query, resp.StatusCode, resp.Header)
	}
	s := &stream{t: t, resp: resp, events: make(chan sseEvent, 100)}
	go s.read()
	return s
}

func (s *stream) read() {
	defer close(s.events)
	sc := bufio.NewScanner(s.resp.Body)
	var e sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if e.event != "" {
				s.events <- e
			}
			e = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			e.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			e.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			e.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func (s *stream) next() sseEvent {
	s.t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			s.t.Fatal("the stream ended without an end event")
		}
		return e
	case <-time.After(30 * time.Second):
		s.t.Fatal("no event within 30 s")
	}
	return sseEvent{}
}

// audit returns the next audit event's action and customer, or the end
// event's reason as "end <reason>".
func (s *stream) audit() (string, string) {
	s.t.Helper()
	e := s.next()
	var r struct{ Action, CustomerID, Reason string }
	if err := json.Unmarshal([]byte(e.data), &struct {
		Action     *string `json:"action"`
		CustomerID *string `json:"customer_id"`
		Reason     *string `json:"reason"`
	}{&r.Action, &r.CustomerID, &r.Reason}); err != nil {
		s.t.Fatalf("%+v: %v", e, err)
	}
	if e.event == "end" {
		return "end " + r.Reason, ""
	}
	return r.Action, r.CustomerID
}

func produceAudit(t *testing.T, cl *kgo.Client, topic, customer string, action wire.Action) {
	t.Helper()
	r := &wire.AuditRecord{SchemaVersion: wire.AuditSchemaVersion, AuditID: uuid.NewString(), EventID: "e-" + customer, Source: "generic",
		CustomerID: customer, Action: action, Actor: wire.ActorConsumer, Instance: "test", At: time.Now().UTC()}
	kr, err := r.KafkaRecord(topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), kr).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestAuditStream: the stream starts at the end of the audit topic (a
// record from before is not sent), sends the records matching its
// filters as they come, ends on its own at max_records or max_seconds,
// and resumes exactly after the last event at Last-Event-ID.
func TestAuditStream(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	topics := testenv.TopicsN(t, brokers, 2)
	tb := setup(t, admin.Config{Brokers: brokers, AuditTopic: topics.Audit}, false)
	srv := httptest.NewServer(tb.h)
	t.Cleanup(srv.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	produceAudit(t, cl, topics.Audit, "c1", wire.ActionAccepted) // before: not sent

	s := openStream(t, srv.URL, "customer_id=c1&max_records=2&max_seconds=60")
	if e := s.next(); e.event != "ready" || e.id == "" {
		t.Fatalf("first event %+v", e)
	}
	produceAudit(t, cl, topics.Audit, "c2", wire.ActionAccepted)
	produceAudit(t, cl, topics.Audit, "c1", wire.ActionProcessing)
	produceAudit(t, cl, topics.Audit, "c1", wire.ActionProcessed)
	produceAudit(t, cl, topics.Audit, "c1", wire.ActionReplayed)
	var lastID string
	for _, want := range []string{"PROCESSING", "PROCESSED"} {
		e := s.next()
		if e.event != "audit" || !strings.Contains(e.data, `"action":"`+want+`"`) || !strings.Contains(e.data, `"customer_id":"c1"`) {
			t.Fatalf("want %s of c1, got %+v", want, e)
		}
		lastID = e.id
	}
	if e := s.next(); e.event != "end" || e.data != `{"reason":"max_records"}` {
		t.Fatalf("after 2 records: %+v", e)
	}

	resumed := openStream(t, srv.URL, "customer_id=c1&max_records=1", "Last-Event-ID", lastID)
	resumed.next() // ready
	if a, c := resumed.audit(); a != "REPLAYED" || c != "c1" {
		t.Fatalf("resumed at %s: %s %s", lastID, a, c)
	}
	// From the start (the partitions are in no order with each other).
	byAction := openStream(t, srv.URL, "action=ACCEPTED&max_records=2&cursor=0:0,1:0")
	byAction.next()
	got := map[string]bool{}
	for range 2 {
		a, c := byAction.audit()
		got[a+" "+c] = true
	}
	if !got["ACCEPTED c1"] || !got["ACCEPTED c2"] {
		t.Fatalf("from the start, ACCEPTED only: %v", got)
	}
	idle := openStream(t, srv.URL, "source=nothing&max_seconds=0.3")
	idle.next()
	if a, _ := idle.audit(); a != "end max_seconds" {
		t.Fatalf("an idle stream: %s", a)
	}
}

// TestAuditStreamRefusesBadOptions: bad options are 400 before anything
// is read; without Kafka brokers the stream is 503.
func TestAuditStreamRefusesBadOptions(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{Brokers: []string{"127.0.0.1:1"}}, false)
	for _, q := range []string{"action=SENT", "action=accepted", "max_seconds=0", "max_seconds=301", "max_seconds=x", "max_seconds=NaN",
		"max_records=0", "max_records=10001", "cursor=abc", "cursor=0:-1", "cursor=0:1,x", "customer_id=%00"} {
		if rec := tb.get("/admin/audit/stream?" + q); rec.Code != http.StatusBadRequest {
			t.Errorf("%q: %d %s", q, rec.Code, rec.Body)
		}
	}
	if rec := tb.do("GET", "/admin/audit/stream", "192.0.2.30:1", "Bearer "+token, "Last-Event-ID", "0:x"); rec.Code != http.StatusBadRequest {
		t.Errorf("bad Last-Event-ID: %d", rec.Code)
	}
	none := setup(t, admin.Config{}, false)
	if rec := none.get("/admin/audit/stream?max_seconds=1"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("without brokers: %d %s", rec.Code, rec.Body)
	}
}

package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/audit/audittest"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/wire"
)

// insertEvent adds a row to events.
func insertEvent(t *testing.T, pool *pgxpool.Pool, eventID, status string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO events (source, event_id, customer_id, status, received_at) VALUES ('generic', $1, 'c', $2, now())`, eventID, status)
	if err != nil {
		t.Fatal(err)
	}
}

// eventRecord is a record of the events topic for eventID, carrying
// decision in its audit-record header unless decision is nil.
func eventRecord(t *testing.T, topic, eventID string, decision *wire.AuditRecord) *kgo.Record {
	t.Helper()
	kr := &kgo.Record{Topic: topic, Key: []byte("c"), Value: []byte(`{}`), Headers: []kgo.RecordHeader{
		{Key: wire.HeaderSource, Value: []byte("generic")}, {Key: wire.HeaderEventID, Value: []byte(eventID)}}}
	if decision != nil {
		b, err := decision.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: wire.HeaderAudit, Value: b})
	}
	return kr
}

// TestVerifyReconcilesDecisionsWithEvents: the topic and the table agree
// (every record in both, so comparing them as sets finds nothing), yet
// decisions are missing from both: an event without its ACCEPTED record,
// a PROCESSED event without its PROCESSED record, a processed record of
// the events topic whose decision was never written. Verify names each
// one; what the relay has yet to publish and what the consumer group has
// yet to reach are not reported.
func TestVerifyReconcilesDecisionsWithEvents(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	since := time.Now().Add(-time.Minute)
	accepted := func(id string) *wire.AuditRecord {
		r := record(id, wire.ActionAccepted)
		r.Actor = wire.ActorIngest
		return r
	}
	okAccepted, lost, later := accepted("ok"), accepted("lost"), accepted("later")
	legacyAccepted := accepted("legacy")
	p, o := int32(0), int64(1) // where the legacy record lands below
	legacyAccepted.Partition, legacyAccepted.Offset = &p, &o
	for id, status := range map[string]string{"ok": "PROCESSED", "legacy": "PROCESSED", "noaccept": "PROCESSED", "noterminal": "PROCESSED",
		"dead": "DEAD", "pending": "PROCESSED", "waiting": "PROCESSING"} {
		insertEvent(t, pool, id, status)
	}
	commit(t, pool, okAccepted, record("ok", wire.ActionProcessed))
	commit(t, pool, legacyAccepted, record("legacy", wire.ActionProcessed))
	commit(t, pool, record("noaccept", wire.ActionProcessed))
	commit(t, pool, accepted("noterminal"))
	commit(t, pool, accepted("dead"), record("dead", wire.ActionDeadLettered))
	commit(t, pool, accepted("waiting"), record("waiting", wire.ActionProcessing))
	audittest.Drain(t, newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit}), pool)
	commit(t, pool, accepted("pending"), record("pending", wire.ActionProcessed)) // not published yet

	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	// Offsets 0 to 3; the group has processed 0 to 2.
	err = producer.ProduceSync(ctx, eventRecord(t, tp.Events, "ok", okAccepted), eventRecord(t, tp.Events, "legacy", nil),
		eventRecord(t, tp.Events, "lost", lost), eventRecord(t, tp.Events, "later", later)).FirstErr()
	if err != nil {
		t.Fatal(err)
	}
	group := "verify-" + tp.Events
	adm := kadm.NewClient(producer)
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: tp.Events, Partition: 0, At: 3, LeaderEpoch: -1})
	if _, err := adm.CommitOffsets(ctx, group, offsets); err != nil {
		t.Fatal(err)
	}

	rep, err := audit.Verify(ctx, audit.VerifyConfig{Pool: pool, Brokers: brokers, Topics: tp, Group: group, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.MissingFromTable) != 0 || len(rep.MissingFromTopic) != 0 || rep.Pending != 2 {
		t.Fatalf("topic and table: %+v, want them to agree with 2 rows pending", rep)
	}
	want := []string{
		"generic/lost ACCEPTED " + lost.AuditID + " [table topic] at 0/2",
		"generic/noaccept ACCEPTED  [table topic]",
		"generic/noterminal PROCESSED  [table topic]",
	}
	var got []string
	for _, m := range rep.MissingDecisions {
		s := fmt.Sprintf("%s/%s %s %s %v", m.Source, m.EventID, m.Action, m.AuditID, m.MissingFrom)
		if m.Partition != nil && m.Offset != nil {
			s += fmt.Sprintf(" at %d/%d", *m.Partition, *m.Offset)
		}
		got = append(got, s)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("missing decisions:\n%q\nwant\n%q", got, want)
	}
	if rep.OK() || rep.Events != 7 || rep.EventRecords != 3 || rep.Unconsumed != 1 {
		t.Errorf("report %+v: want not OK, 7 events, 3 event records checked, 1 unconsumed", rep)
	}
}

// TestVerifyWhileTheRelayPublishes: rows the relay publishes while verify
// reads the topic are pending, not missing from it. Verify read the
// relay's position after the topic, and a relay catching up after a
// failure (the fault schedule's) made its last rounds look lost.
func TestVerifyWhileTheRelayPublishes(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	since := time.Now().Add(-time.Minute)
	relay := newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit})
	commit(t, pool, record("before", wire.ActionProcessing))
	audittest.Drain(t, relay, pool) // something on the topic to read
	commit(t, pool, record("meanwhile", wire.ActionProcessing), record("meanwhile", wire.ActionProcessed))
	rep, err := audit.VerifyPublishingMeanwhile(ctx, audit.VerifyConfig{Pool: pool, Brokers: brokers, Topics: tp, Since: since},
		func() { audittest.Drain(t, relay, pool) })
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.MissingFromTopic) != 0 || len(rep.MissingFromTable) != 0 || rep.Pending != 2 {
		t.Fatalf("%+v: want nothing missing, the 2 rows published meanwhile pending", rep)
	}
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

// eventOf reads a record of the events topic; an error names what is
// missing for it to be processed.
func eventOf(r *kgo.Record) (*Event, error) {
	ev := &Event{Body: r.Value, Partition: r.Partition, Offset: r.Offset, CustomerID: string(r.Key), Headers: make(map[string]string, len(r.Headers))}
	for _, h := range r.Headers {
		ev.Headers[h.Key] = string(h.Value)
	}
	ev.EventID = ev.Headers[wire.HeaderEventID]
	ev.Source = ev.Headers[wire.HeaderSource]
	ev.EventType = ev.Headers[wire.HeaderEventType]
	ev.Redrive = ev.Headers[wire.HeaderRedrive] == "true"
	if b, err := strconv.ParseInt(ev.Headers[wire.HeaderBucket], 10, 32); err == nil && b > 0 && !ev.Redrive {
		ev.floor = int32(b)
	}
	if t, err := time.Parse(time.RFC3339Nano, ev.Headers[wire.HeaderReceivedAt]); err == nil {
		ev.ReceivedAt = t
	}
	switch {
	case ev.EventID == "" || ev.Source == "":
		return nil, errors.New("missing event-id or source header")
	case ev.CustomerID == "":
		return nil, errors.New("missing key (customer id)")
	}
	return ev, nil
}

// decode turns a batch's records into events. A record that is not a
// hookstream event (no event id, source or customer) cannot be processed,
// and skipping it would lose it silently: it goes to the dead-letter topic
// with the reason, is counted, and only then may the position pass it.
func (c *Consumer) decode(ctx context.Context, recs []*kgo.Record) ([]*Event, error) {
	evs := make([]*Event, 0, len(recs))
	var bad []*kgo.Record
	for _, r := range recs {
		ev, err := eventOf(r)
		if err != nil {
			bad = append(bad, malformedLetter(c.cfg.Topics.DLQ, r, err))
			continue
		}
		evs = append(evs, ev)
	}
	if len(bad) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.cl.ProduceSync(pctx, bad...).FirstErr(); err != nil {
			return nil, fmt.Errorf("dead letter of a malformed record: %w", err)
		}
		malformedTotal.Add(float64(len(bad)))
		c.log.Error("records without hookstream metadata sent to the dead-letter topic", "records", len(bad))
	}
	return evs, nil
}

// malformedLetter is the dead letter of a record decode refused.
func malformedLetter(topic string, r *kgo.Record, reason error) *kgo.Record {
	out := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: append([]kgo.RecordHeader(nil), r.Headers...)}
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: "error", Value: []byte("malformed record: " + reason.Error())},
		kgo.RecordHeader{Key: "original-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: "original-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
	)
	return out
}

func (c *Consumer) auditRecord(ev *Event, action wire.Action, reason string, detail map[string]any) *wire.AuditRecord {
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	if ev.trace != nil {
		detail = tracing.WithDecision(detail, ev.trace.span.SpanContext())
	}
	p, o := ev.Partition, ev.Offset
	return &wire.AuditRecord{
		SchemaVersion: wire.AuditSchemaVersion, AuditID: id.String(),
		EventID: ev.EventID, Source: ev.Source, CustomerID: ev.CustomerID, EventType: ev.EventType,
		Action: action, Reason: reason, Attempt: ev.Attempt, Partition: &p, Offset: &o,
		Actor: wire.ActorConsumer, Instance: c.cfg.Instance, RequestID: ev.Headers[wire.HeaderRequestID],
		At: time.Now().UTC(), Detail: detail,
	}
}

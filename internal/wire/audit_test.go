package wire

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAuditMarshalLikeEncodingJSON: the audit record's encoding is byte for
// byte what encoding/json writes, HTML escaping and map key order
// included, so readers of the topic see one format.
func TestAuditMarshalLikeEncodingJSON(t *testing.T) {
	p, o := int32(3), int64(42)
	recs := []*AuditRecord{
		{SchemaVersion: 1, AuditID: "0194", EventID: "evt_<1>&\u2028", Source: "generic", CustomerID: "cus_é", Action: ActionAccepted,
			HTTPStatus: 202, Actor: ActorIngest, Instance: "i", RequestID: "r", At: time.Date(2026, 11, 28, 1, 2, 3, 456789, time.UTC),
			Partition: &p, Offset: &o, Detail: map[string]any{"z": 1, "a": "x<y", "m": map[string]any{"b": true, "a": nil}, "n": json.Number("12345678901234567890")}},
		{SchemaVersion: 1, AuditID: "0195", Action: ActionRejected, Reason: "bad_signature", Actor: ActorIngest, Instance: "i", At: time.Unix(0, 0).UTC()},
		{SchemaVersion: 2, AuditID: "0196", EventID: "e", Source: "s", Action: ActionAccepted, Actor: ActorIngest, Instance: "i", At: time.Unix(1, 2).UTC(),
			Detail: map[string]any{"client_request_id": "req-1", "b": "", "a": "x"}},
		{SchemaVersion: 2, AuditID: "0197", Action: ActionRejected, Actor: ActorIngest, Instance: "i", At: time.Unix(1, 2).UTC(),
			Detail: map[string]any{"client_request_id": "req-1", "error": "a \"quoted\" <error>"}},
	}
	for _, r := range recs {
		got, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("sonic:         %s\nencoding/json: %s", got, want)
		}
	}
}

// FuzzAuditMarshal: the hand-encoded common record is what encoding/json
// writes, and so is everything left to the general encoder. detailKind
// picks the detail: none, one string, two strings, or a string and a
// number (which only the general encoder writes).
func FuzzAuditMarshal(f *testing.F) {
	f.Add("0194", "evt_1", "generic", "cus_1", "invoice.paid", "ACCEPTED", "", 202, 0, int32(3), int64(42), true, "host", "req-1", int64(1764378123456789012), 0, uint8(0), "", "")
	f.Add("a", "", "", "", "", "REJECTED", "signature_invalid", 401, 0, int32(0), int64(0), false, "i", "", int64(0), 3600, uint8(1), "client_request_id", "req-9")
	f.Add("a", "e<1>", "s\"", "c\\", "é", "X", "\u2028", 0, 7, int32(-1), int64(-5), true, "\x00", "\xff", int64(-62135596800000000), -60, uint8(2), "b", "a")
	f.Add("a", "e", "s", "c", "t", "ACCEPTED", "", 202, 0, int32(0), int64(0), false, "i", "r", int64(0), 0, uint8(3), "client_request_id", "<&>")
	f.Fuzz(func(t *testing.T, auditID, eventID, source, customerID, eventType, action, reason string, status, attempt int,
		partition int32, offset int64, hasPos bool, instance, requestID string, atNanos int64, zoneSeconds int,
		detailKind uint8, detailKey, detailValue string) {
		r := AuditRecord{SchemaVersion: AuditSchemaVersion, AuditID: auditID, EventID: eventID, Source: source, CustomerID: customerID,
			EventType: eventType, Action: Action(action), Reason: reason, HTTPStatus: status, Attempt: attempt,
			Actor: ActorIngest, Instance: instance, RequestID: requestID,
			At: time.Unix(0, atNanos).In(time.FixedZone("z", zoneSeconds%86400))}
		if hasPos {
			r.Partition, r.Offset = &partition, &offset
		}
		switch detailKind % 4 {
		case 1:
			r.Detail = map[string]any{detailKey: detailValue}
		case 2:
			r.Detail = map[string]any{detailKey: detailValue, detailValue: detailKey}
		case 3:
			r.Detail = map[string]any{detailKey: detailValue, "n": 1}
		}
		want, err := json.Marshal(&r)
		if err != nil {
			return // encoding/json refuses it (a time it cannot write)
		}
		got, err := r.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v (encoding/json: %s)", err, want)
		}
		if string(got) != string(want) {
			t.Fatalf("Marshal:       %s\nencoding/json: %s", got, want)
		}
	})
}

// TestAuditKey: the topic's key is made of what hookstream vouches for:
// the source and the event id, else the server's request id, never the
// client's, else the record's own audit id.
func TestAuditKey(t *testing.T) {
	detail := map[string]any{DetailClientRequestID: "evt_1"}
	for _, c := range []struct {
		r    AuditRecord
		want string
	}{
		{AuditRecord{EventID: "evt_1", Source: "stripe", RequestID: "r1", Detail: detail}, "stripe/evt_1"},
		{AuditRecord{EventID: "evt_1", Source: "github", RequestID: "r1"}, "github/evt_1"},
		{AuditRecord{RequestID: "0194f3a0-0000-7000-8000-000000000001", Source: "stripe", Detail: detail}, "0194f3a0-0000-7000-8000-000000000001"},
		// A customer drained with nothing left: no event, no request.
		{AuditRecord{AuditID: "0194f3a0-0000-7000-8000-000000000002", Source: "stripe", CustomerID: "c", Action: ActionUnparked}, "0194f3a0-0000-7000-8000-000000000002"},
	} {
		if got := c.r.Key(); got != c.want {
			t.Errorf("key of %+v is %q, want %q", c.r, got, c.want)
		}
	}
}

package wire

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAuditMarshalLikeEncodingJSON: the audit record's encoding (sonic) is
// byte for byte what encoding/json writes, HTML escaping and map key order
// included, so readers of the topic see one format.
func TestAuditMarshalLikeEncodingJSON(t *testing.T) {
	p, o := int32(3), int64(42)
	recs := []*AuditRecord{
		{SchemaVersion: 1, AuditID: "0194", EventID: "evt_<1>&\u2028", Source: "generic", CustomerID: "cus_é", Action: ActionAccepted,
			HTTPStatus: 202, Actor: ActorIngest, Instance: "i", RequestID: "r", At: time.Date(2026, 11, 28, 1, 2, 3, 456789, time.UTC),
			Partition: &p, Offset: &o, Detail: map[string]any{"z": 1, "a": "x<y", "m": map[string]any{"b": true, "a": nil}, "n": json.Number("12345678901234567890")}},
		{SchemaVersion: 1, AuditID: "0195", Action: ActionRejected, Reason: "bad_signature", Actor: ActorIngest, Instance: "i", At: time.Unix(0, 0).UTC()},
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

package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func acceptedRecord() *AuditRecord {
	return &AuditRecord{SchemaVersion: AuditSchemaVersion, AuditID: "01a22394-a0c5-7e2b-9fff-37442765e558", EventID: "evt_1",
		Source: "generic", CustomerID: "cus_1", EventType: "invoice.paid", Action: ActionAccepted, HTTPStatus: 202,
		Actor: ActorIngest, Instance: "host-1", RequestID: "01a22394-a0c5-7e2b-9fff-37442765e559",
		At: time.Date(2026, 12, 1, 2, 3, 4, 5, time.UTC), Detail: map[string]any{"duplicate_check": "unavailable"}}
}

func TestAuditFromHeaderRoundTrip(t *testing.T) {
	for _, action := range []Action{ActionAccepted, ActionRetryAccepted} {
		want := acceptedRecord()
		want.Action = action
		v, err := want.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := AuditFromHeader(v)
		if err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		again, err := got.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(v) {
			t.Errorf("%s: decoded and encoded again:\n%s\nwant\n%s", action, again, v)
		}
	}
	// A field a newer build of the same version added is ignored.
	v, _ := acceptedRecord().Marshal()
	v = append(v[:len(v)-1], `,"new_optional":1}`...)
	if _, err := AuditFromHeader(v); err != nil {
		t.Errorf("record with an unknown field: %v", err)
	}
}

func TestAuditFromHeaderRefuses(t *testing.T) {
	for name, change := range map[string]func(r *AuditRecord){
		"older schema version": func(r *AuditRecord) { r.SchemaVersion = AuditSchemaVersion - 1 },
		"newer schema version": func(r *AuditRecord) { r.SchemaVersion = AuditSchemaVersion + 1 },
		"rejection":            func(r *AuditRecord) { r.Action = ActionRejected },
		"processed":            func(r *AuditRecord) { r.Action = ActionProcessed },
		"unknown action":       func(r *AuditRecord) { r.Action = "ACCEPTED_LATER" },
		"consumer":             func(r *AuditRecord) { r.Actor = ActorConsumer },
		"audit id not a uuid":  func(r *AuditRecord) { r.AuditID = "evt_1" },
		"audit id in braces":   func(r *AuditRecord) { r.AuditID = "{" + r.AuditID + "}" },
		"audit id upper case":  func(r *AuditRecord) { r.AuditID = strings.ToUpper(r.AuditID) },
		"no event id":          func(r *AuditRecord) { r.EventID = "" },
		"no source":            func(r *AuditRecord) { r.Source = "" },
		"no instance":          func(r *AuditRecord) { r.Instance = "" },
		"no time":              func(r *AuditRecord) { r.At = time.Time{} },
	} {
		r := acceptedRecord()
		change(r)
		v, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := AuditFromHeader(v); !errors.Is(err, ErrAuditHeader) {
			t.Errorf("%s: error %v, want ErrAuditHeader", name, err)
		}
	}
	for _, v := range []string{"", "null", "{}", "[]", `"ACCEPTED"`, `{"schema_version":"2"}`, "{} {}"} {
		if _, err := AuditFromHeader([]byte(v)); !errors.Is(err, ErrAuditHeader) {
			t.Errorf("%q: error %v, want ErrAuditHeader", v, err)
		}
	}
}

// FuzzAuditFromHeader: whatever the header holds, AuditFromHeader returns
// an error or a record that passes its own checks and encodes back to an
// equal record.
func FuzzAuditFromHeader(f *testing.F) {
	v, _ := acceptedRecord().Marshal()
	f.Add(v)
	f.Add([]byte(`{"schema_version":2,"audit_id":"01a22394-a0c5-7e2b-9fff-37442765e558","event_id":"e","source":"s","action":"RETRY_ACCEPTED","actor":"ingest","instance":"i","at":"2026-12-01T00:00:00Z","detail":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"schema_version":2,"action":"ACCEPTED","actor":"ingest","partition":-1,"offset":1e3}`))
	f.Add([]byte(`{"schema_version":2,"schema_version":2,"at":"0000-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := AuditFromHeader(v)
		if err != nil {
			if !errors.Is(err, ErrAuditHeader) || r != nil {
				t.Fatalf("record %v, error %v: want nil and ErrAuditHeader", r, err)
			}
			return
		}
		if r.SchemaVersion != AuditSchemaVersion || (r.Action != ActionAccepted && r.Action != ActionRetryAccepted) ||
			r.Actor != ActorIngest || !canonicalUUID(r.AuditID) || r.EventID == "" || r.Source == "" {
			t.Fatalf("accepted %+v", r)
		}
		enc, err := r.Marshal()
		if err != nil {
			return // a time or number encoding/json reads but does not write
		}
		again, err := AuditFromHeader(enc)
		if err != nil {
			t.Fatalf("re-encoded record refused: %v\n%s", err, enc)
		}
		enc2, err := again.Marshal()
		if err != nil || string(enc2) != string(enc) {
			t.Fatalf("not stable: %s\n%s (%v)", enc, enc2, err)
		}
	})
}

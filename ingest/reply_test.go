package ingest

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzReplyJSON: the hand-encoded reply is what encoding/json writes.
func FuzzReplyJSON(f *testing.F) {
	for _, id := range []string{"evt_1", "", `a"b`, `a\b`, "<script>", "a&b", "é", "\x00", "\xff", "\u2028", strings256} {
		f.Add(id, false)
		f.Add(id, true)
	}
	f.Fuzz(func(t *testing.T, id string, retry bool) {
		r := Reply{EventID: id, Status: "accepted", Retry: retry}
		got, ok := r.appendJSON(nil)
		if !ok {
			return // left to encoding/json (c.JSON)
		}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("appendJSON %s, encoding/json %s", got, want)
		}
	})
}

const strings256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// Ids that JSON escapes are left to the general encoder.
func TestReplyJSONFallsBack(t *testing.T) {
	for _, id := range []string{`a"b`, `a\b`, "<", ">", "&", "é", "\x1f", "\x7f"} {
		if _, ok := (Reply{EventID: id, Status: "accepted"}).appendJSON(nil); ok {
			t.Errorf("appendJSON(%q) took the fast path", id)
		}
	}
	if b, ok := (Reply{EventID: "evt_1", Status: "duplicate"}).appendJSON(nil); !ok || string(b) != `{"event_id":"evt_1","status":"duplicate"}` {
		t.Errorf("appendJSON = %s, %v", b, ok)
	}
}

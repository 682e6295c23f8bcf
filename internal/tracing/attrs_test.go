package tracing

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBounded(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int // bytes kept
	}{
		{"", 0},
		{strings.Repeat("a", MaxAttrLen), MaxAttrLen},
		{strings.Repeat("a", MaxAttrLen+1), MaxAttrLen},
		{"a" + strings.Repeat("é", MaxAttrLen), MaxAttrLen - 1}, // byte 256 would split an é
		{strings.Repeat("€", MaxAttrLen), MaxAttrLen - 1},       // 85 whole runes
		{strings.Repeat("😀", MaxAttrLen), MaxAttrLen},           // 64 whole runes
		{"ab" + strings.Repeat("😀", MaxAttrLen), MaxAttrLen - 2},
	} {
		got := Bounded(c.in)
		if len(got) != c.want || !strings.HasPrefix(c.in, got) || (utf8.ValidString(c.in) && !utf8.ValidString(got)) {
			t.Errorf("Bounded of %d bytes: %d bytes (valid %v), want %d", len(c.in), len(got), utf8.ValidString(got), c.want)
		}
	}
}

func TestDBAttrs(t *testing.T) {
	str := func(op string, cs ...string) string {
		var parts []string
		for _, kv := range DBAttrs(op, cs...) {
			parts = append(parts, string(kv.Key)+"="+kv.Value.String())
		}
		return strings.Join(parts, " ")
	}
	for got, want := range map[string]string{
		str("SELECT", "events"):                    "db.system.name=postgresql db.operation.name=SELECT db.collection.name=events",
		str("SELECT", "customer_blocks", "events"): "db.system.name=postgresql db.operation.name=SELECT db.query.summary=SELECT customer_blocks events",
		str("BATCH"): "db.system.name=postgresql db.operation.name=BATCH",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

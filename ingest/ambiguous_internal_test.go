package ingest

import (
	"strconv"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	many := `{`
	for i := range 40 {
		many += `"k` + strconv.Itoa(i) + `":1,`
	}
	for _, c := range []struct {
		doc, want string
		dup       bool
	}{
		{`{"a":1,"b":2}`, "", false},
		{`{"a":1,"a":2}`, "a", true},
		{`{"a":{"b":1},"b":2}`, "", false},
		{`{"a":{"b":1,"b":2}}`, "b", true},
		{`[{"a":1},{"a":1}]`, "", false},
		{`{"a\u0062":1,"ab":2}`, "ab", true},
		{`{"x":"\"a\":1,\"a\":","a":1}`, "", false},
		{`{"":1,"":2}`, "", true},
		{`"just a string"`, "", false},
		{many + `"k0":2}`, "k0", true}, {`{"a":1,"a`, "", false},
		{many + `"z":2}`, "", false},
	} {
		got, dup := duplicateKey([]byte(c.doc))
		if dup != c.dup || got != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.doc, got, dup, c.want, c.dup)
		}
	}
}

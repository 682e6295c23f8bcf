package ingest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookstream/hookstream/internal/sources"
)

func TestPointer(t *testing.T) {
	t.Parallel()
	doc := decode(t, `{"a":{"b/c":{"d~e":["x","y"]}},"n":42,"":"empty"}`)
	cases := []struct {
		ptr  string
		want any
		ok   bool
	}{
		{"/a/b~1c/d~0e/1", "y", true},
		{"/a/b~1c/d~0e/0", "x", true},
		{"/a/b~1c/d~0e/2", nil, false},
		{"/a/b~1c/d~0e/01", nil, false},
		{"/a/b~1c/d~0e/-1", nil, false},
		{"/n", json.Number("42"), true},
		{"/", "empty", true},
		{"/missing", nil, false},
		{"/n/deeper", nil, false},
	}
	for _, c := range cases {
		p, err := parsePointer(c.ptr)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := p.lookup(doc)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("%s: got %v %v, want %v %v", c.ptr, got, ok, c.want, c.ok)
		}
	}
	if _, err := parsePointer("a/b"); err == nil {
		t.Error("pointer without leading / accepted")
	}
}

func decode(t testing.TB, s string) any {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// FuzzExtract: whatever a stranger sends, extraction never panics, and an id
// it returns is a non-empty, bounded, control-free string that really is at
// the pointer.
func FuzzExtract(f *testing.F) {
	f.Add(`{"event_id":"e1","customer_id":"c1"}`, "/customer_id", "")
	f.Add(`{"a":[{"b":7}]}`, "/a/0/b", "")
	f.Add(`{"a":{"~/":"x"}}`, "/a/~0~1", "")
	f.Add(`[]`, "/0", "X-Id")
	f.Add(`{"id":1e400}`, "/id", "")
	f.Fuzz(func(t *testing.T, body, ptr, hdr string) {
		var loc sources.Locator
		if hdr != "" {
			loc.Header = hdr
		} else {
			loc.Pointer = ptr
		}
		l, err := compileLocator("event_id", loc)
		if err != nil {
			return
		}
		doc, err := decodeJSON([]byte(body))
		if err != nil {
			doc = nil
		}
		h := http.Header{}
		if hdr != "" {
			h.Set(hdr, body)
		}
		v, problem := l.extract(h, doc)
		if problem != "" {
			if v != "" {
				t.Fatalf("value %q with problem %q", v, problem)
			}
			return
		}
		if checkID(v) != "" {
			t.Fatalf("returned unusable id %q", v)
		}
		if hdr == "" {
			raw, ok := l.ptr.lookup(doc)
			if !ok {
				t.Fatalf("id %q returned for a missing pointer", v)
			}
			switch r := raw.(type) {
			case string:
				if r != v {
					t.Fatalf("id %q, pointer holds %q", v, r)
				}
			case json.Number:
				if r.String() != v {
					t.Fatalf("id %q, pointer holds %s", v, r)
				}
			default:
				t.Fatalf("id %q from a %T", v, raw)
			}
		}
	})
}

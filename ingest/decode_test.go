package ingest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FuzzDecodeJSON: on valid UTF-8 (the receiver rejects anything else before
// decoding), decodeJSON accepts exactly what encoding/json accepts and
// yields the same value.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{} {}`, `[1,2]`, `{"a":820982911946154500}`, `{"a":1e400}`, `"\u0000"`,
		"\"a\tb\"", `{"a":1,"a":2}`, `  null  `, `{"a":"\ud800"}`, `tru`, `{"a":-0.0e-0}`, ``, `01`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return
		}
		want, wantErr := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		got, gotErr := decodeJSON(b)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: encoding/json error %v, decodeJSON error %v", b, wantErr, gotErr)
		}
		if wantErr == nil && !reflect.DeepEqual(want, got) {
			t.Fatalf("%q: encoding/json %#v, decodeJSON %#v", b, want, got)
		}
	})
}

func BenchmarkDecodeJSON(b *testing.B) {
	body := []byte(`{"event_id":"evt_1","customer_id":"cus_1","event_type":"t","payload":{"pad":"` + string(bytes.Repeat([]byte("x"), 900)) + `"}}`)
	b.Run("sonic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeJSON(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var _ = json.Number("")

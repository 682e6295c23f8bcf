package ingest

import (
	"unsafe"

	"github.com/bytedance/sonic"
)

// jsonAPI decodes request bodies. sonic (already in the build through gin)
// is several times faster than encoding/json at decoding into any, which is
// the receiver's largest per-request cost after HTTP itself. It is set up to
// behave like encoding/json: numbers as json.Number (so large integer ids
// keep every digit) and strings validated. Strings may share memory with the
// body, which outlives the decoded document. FuzzDecodeJSON checks that it
// accepts and produces exactly what encoding/json does.
var jsonAPI = sonic.Config{
	UseNumber:      true,
	ValidateString: true,
}.Froze()

// decodeJSON decodes one JSON value, rejecting trailing data. The body is
// never written after it is read, so it is decoded in place: sonic's
// Unmarshal would first copy it into a string.
func decodeJSON(body []byte) (any, error) {
	var doc any
	if err := jsonAPI.UnmarshalFromString(unsafe.String(unsafe.SliceData(body), len(body)), &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

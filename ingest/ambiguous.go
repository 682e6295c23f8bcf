package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"unsafe"
)

// JSON differentials: a body that parsers may read differently. The
// receiver checks the values it reads, and the consumer's destination
// reads the same bytes with a parser of its own: with a key twice in one
// object, encoding/json and sonic take the last value and others the
// first; and encoding/json matches struct fields case-insensitively, so
// "Event_ID" beside (or instead of) "event_id" is the id to a Go
// destination and not to hookstream. Either way the event checked is not
// the event processed.

// ambiguity describes what makes body (valid JSON, decoded as doc when the
// source needed it) ambiguous, or returns "".
func (s *source) ambiguity(body []byte, doc any) string {
	if k, ok := duplicateKey(body); ok {
		return fmt.Sprintf("key %q appears twice in one object", k)
	}
	if doc == nil {
		return ""
	}
	for _, p := range s.caseChecked {
		if msg := p.caseCollision(doc); msg != "" {
			return msg
		}
	}
	return ""
}

// caseCheckedPointers are the pointers along which a key differing from
// the expected one only in case is refused: the source's locators and the
// top-level event_id, customer_id and event_type. Only along them: a
// payload's own keys (Stripe's metadata) may be anything.
func caseCheckedPointers(locs ...locator) []pointer {
	out := []pointer{{"event_id"}, {"customer_id"}, {"event_type"}}
	for _, l := range locs {
		if l.ptr != nil {
			out = append(out, l.ptr)
		}
	}
	return out
}

// caseCollision reports a key on p's path in doc that equals p's token
// only when case is folded (as encoding/json folds it), or "".
func (p pointer) caseCollision(doc any) string {
	cur := doc
	for _, tok := range p {
		switch v := cur.(type) {
		case map[string]any:
			for k := range v {
				if k != tok && strings.EqualFold(k, tok) {
					return fmt.Sprintf("key %q differs only in case from %q", k, tok)
				}
			}
			next, ok := v[tok]
			if !ok {
				return ""
			}
			cur = next
		case []any:
			next, ok := pointer{tok}.lookup(v)
			if !ok {
				return ""
			}
			cur = next
		default:
			return ""
		}
	}
	return ""
}

// keyFrame is an object or array open at the scanner's position; keys
// of an object are keys[start:], or set once it has many.
type keyFrame struct {
	object bool
	start  int
	set    map[string]struct{}
}

// manyKeys is where an object's keys go into a map instead of being
// compared one by one.
const manyKeys = 32

// duplicateKey returns a key that appears twice in one object of body,
// which must be valid JSON, comparing keys as decoded (escapes undone).
// One pass, no allocation for the usual body.
func duplicateKey(body []byte) (string, bool) {
	var stackBuf [16]keyFrame
	var keyBuf [64]string
	stack, keys := stackBuf[:0], keyBuf[:0]
	expectKey := false
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{':
			stack = append(stack, keyFrame{object: true, start: len(keys)})
			expectKey = true
		case '[':
			stack = append(stack, keyFrame{start: len(keys)})
			expectKey = false
		case '}', ']':
			if len(stack) == 0 {
				return "", false
			}
			keys = keys[:stack[len(stack)-1].start]
			stack = stack[:len(stack)-1]
			expectKey = false
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].object
		case '"':
			j, escaped := i+1, false
			for j < len(body) && body[j] != '"' {
				if body[j] == '\\' {
					escaped = true
					j++
				}
				j++
			}
			if j >= len(body) {
				return "", false // not valid JSON: not this scanner's to judge
			}
			if expectKey {
				k := unsafe.String(&body[i], j+1-i)[1 : j-i]
				if escaped {
					_ = json.Unmarshal(body[i:j+1], &k) // valid JSON: cannot fail
				}
				f := &stack[len(stack)-1] // expectKey: an object is open
				var dup bool
				if keys, dup = f.add(keys, k); dup {
					return strings.Clone(k), true
				}
				expectKey = false
			}
			i = j
		}
	}
	return "", false
}

// add records k among the frame's keys and reports whether it was there.
func (f *keyFrame) add(keys []string, k string) ([]string, bool) {
	if f.set != nil {
		if _, ok := f.set[k]; ok {
			return keys, true
		}
		f.set[k] = struct{}{}
		return keys, false
	}
	for _, seen := range keys[f.start:] {
		if seen == k {
			return keys, true
		}
	}
	keys = append(keys, k)
	if len(keys)-f.start > manyKeys {
		f.set = make(map[string]struct{}, 2*manyKeys)
		for _, seen := range keys[f.start:] {
			f.set[seen] = struct{}{}
		}
	}
	return keys, false
}

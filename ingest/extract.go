package ingest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hookstream/hookstream/internal/sources"
)

// pointer is a parsed RFC 6901 JSON pointer.
type pointer []string

func parsePointer(s string) (pointer, error) {
	if s == "" {
		return nil, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("json pointer %q must start with '/'", s)
	}
	toks := strings.Split(s[1:], "/")
	for i, t := range toks {
		if strings.Contains(t, "~") {
			// ~1 before ~0, as RFC 6901 section 4 requires.
			t = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
			toks[i] = t
		}
	}
	return toks, nil
}

// lookup walks doc (as decoded with json.Number numbers) along the pointer.
func (p pointer) lookup(doc any) (any, bool) {
	cur := doc
	for _, tok := range p {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) || (len(tok) > 1 && tok[0] == '0') {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// locator is a compiled sources.Locator.
type locator struct {
	name   string // "event_id", "customer_id", "event_type"
	header string // canonical header name
	// alt: the header's other name, read when header is absent (Shopify's
	// names without X-); "" when it has none.
	alt  string
	ptr  pointer
	desc string
}

func compileLocator(name string, l sources.Locator) (locator, error) {
	loc := locator{name: name, desc: l.String()}
	if l.Header != "" {
		loc.header = http.CanonicalHeaderKey(l.Header)
		return loc, nil
	}
	p, err := parsePointer(l.Pointer)
	if err != nil {
		return loc, err
	}
	loc.ptr = p
	return loc, nil
}

func (l *locator) isZero() bool { return l.header == "" && l.ptr == nil }

// extract returns the value or a description of what is wrong with it. doc
// is nil when the body was not decoded (no locator needs it).
func (l *locator) extract(h http.Header, doc any) (string, string) {
	var raw any
	if l.header != "" {
		vs := h.Values(l.header)
		if l.alt != "" {
			if alts := h.Values(l.alt); len(vs) == 0 {
				vs = alts
			} else if len(alts) > 0 && alts[0] != vs[0] {
				// Two values a downstream reader may choose between.
				return "", fmt.Sprintf("%s: %s and %s differ (%s)", l.name, l.header, l.alt, l.desc)
			}
		}
		if len(vs) == 0 {
			return "", fmt.Sprintf("%s: missing (%s)", l.name, l.desc)
		}
		raw = vs[0]
	} else {
		v, ok := l.ptr.lookup(doc)
		if !ok || v == nil {
			return "", fmt.Sprintf("%s: missing (%s)", l.name, l.desc)
		}
		raw = v
	}
	var s string
	switch v := raw.(type) {
	case string:
		s = v
	case json.Number:
		// Providers such as Shopify use numeric ids; only integers are ids.
		if _, err := strconv.ParseInt(v.String(), 10, 64); err != nil {
			return "", fmt.Sprintf("%s: must be a string or an integer (%s)", l.name, l.desc)
		}
		s = v.String()
	default:
		return "", fmt.Sprintf("%s: must be a string or an integer, got %s (%s)", l.name, jsonType(v), l.desc)
	}
	if problem := checkID(s); problem != "" {
		return "", fmt.Sprintf("%s: %s (%s)", l.name, problem, l.desc)
	}
	return s, ""
}

// checkID reports what makes s unusable as an id, or "".
func checkID(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > sources.MaxIDBytes:
		return fmt.Sprintf("longer than %d bytes", sources.MaxIDBytes)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	blank := true
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return "contains control characters"
		case unicode.Is(unicode.Cf, r):
			// Bidi controls and zero-width characters: an id that shows as
			// another, or as two ids that look the same.
			return fmt.Sprintf("contains the format character %U", r)
		case r == '\u2028' || r == '\u2029':
			return "contains a line or paragraph separator"
		case r == utf8.RuneError:
			// What a decoder makes of a lone surrogate (\ud800): two ids
			// that differ only there would become one.
			return "contains U+FFFD (a lone surrogate, or a replaced byte)"
		}
		if !unicode.IsSpace(r) {
			blank = false
		}
	}
	if blank {
		return "is only whitespace"
	}
	return ""
}

func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case bool:
		return "boolean"
	case nil:
		return "null"
	case json.Number:
		return "number"
	default:
		return fmt.Sprintf("%T", v)
	}
}

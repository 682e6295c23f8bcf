package apidocstest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// sseDecoder reads a text/event-stream body as OpenAPI 3.1 documents it
// (and schemathesis reads it): the media type's schema describes each
// event, an object of event, id, retry and data. kin-openapi validates
// one value per body, so the decoder checks every event against the
// schema itself and hands back the first, which then passes.
func sseDecoder(body io.Reader, _ http.Header, schema *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	events, err := parseSSE(body)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, errors.New("an event stream without an event")
	}
	for i, e := range events {
		if err := schema.Value.VisitJSON(e); err != nil {
			return nil, fmt.Errorf("event %d (%v): %w", i, e, err)
		}
	}
	return events[0], nil
}

// parseSSE splits a stream into events (comments skipped, data lines
// joined), as the WHATWG's event stream parser does.
func parseSSE(body io.Reader) ([]map[string]any, error) {
	var events []map[string]any
	cur, data := map[string]any{}, []string(nil)
	flush := func() {
		if len(data) > 0 || len(cur) > 0 {
			if data != nil {
				cur["data"] = strings.Join(data, "\n")
			}
			events = append(events, cur)
		}
		cur, data = map[string]any{}, nil
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			flush()
		case field == "":
			// a comment
		case field == "data":
			data = append(data, value)
		case field == "retry":
			n, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("retry %q", value)
			}
			cur["retry"] = float64(n)
		default:
			cur[field] = value
		}
	}
	flush()
	return events, sc.Err()
}

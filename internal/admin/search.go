package admin

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// eventFilter is what GET /admin/events was asked for: exact matches on
// the event's keys, a range of updated_at (the order of the listing, so
// that a range and the cursor page through one index order) and the page.
type eventFilter struct {
	customerID, status, source, eventID, eventType string
	since, until                                   *time.Time
	limit                                          int
	after                                          *cursor
}

// eventFilterSQL selects the events of eventFilter.args: $1 is the
// limit (one more than a page, to know whether there is a next one).
const eventFilterSQL = `($2 = '' OR customer_id = $2) AND ($3 = '' OR status = $3)
  AND ($4 = '' OR source = $4) AND ($5 = '' OR event_id = $5) AND ($6 = '' OR event_type = $6)
  AND ($7::timestamptz IS NULL OR updated_at >= $7) AND ($8::timestamptz IS NULL OR updated_at < $8)
  AND ($9::timestamptz IS NULL OR (updated_at, source, event_id) < ($9, $10, $11))`

func (f *eventFilter) args() []any {
	args := []any{f.limit + 1, f.customerID, f.status, f.source, f.eventID, f.eventType, f.since, f.until, nil, "", ""}
	if f.after != nil {
		args[8], args[9], args[10] = f.after.UpdatedAt, f.after.Source, f.after.EventID
	}
	return args
}

// parseEventFilter reads the query; on a bad value it answers 400 and
// reports false.
func parseEventFilter(c *gin.Context) (*eventFilter, bool) {
	f := &eventFilter{limit: 100, customerID: c.Query("customer_id"), status: c.Query("status"),
		source: c.Query("source"), eventID: c.Query("event_id"), eventType: c.Query("event_type")}
	bad := func(msg string) (*eventFilter, bool) {
		fail(c, http.StatusBadRequest, "bad_request", msg)
		return nil, false
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return bad("limit must be between 1 and 1000")
		}
		f.limit = n
	}
	switch f.status {
	case "", "PROCESSING", "PROCESSED", "FAILED", "DEAD", "PARKED":
	default:
		return bad("status must be one of PROCESSING, PROCESSED, FAILED, DEAD, PARKED")
	}
	for _, p := range []struct {
		name string
		to   **time.Time
	}{{"since", &f.since}, {"until", &f.until}} {
		v := c.Query(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return bad(p.name + " must be an RFC 3339 time, such as 2026-11-30T17:00:00Z")
		}
		*p.to = &t
	}
	if v := c.Query("cursor"); v != "" {
		raw, err := base64.RawURLEncoding.DecodeString(v)
		f.after = &cursor{}
		if err != nil || json.Unmarshal(raw, f.after) != nil {
			return bad("cursor is not one this API returned")
		}
	}
	return f, true
}

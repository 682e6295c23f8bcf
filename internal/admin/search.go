package admin

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
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

// statuses are the five an event can have (the CHECK on events.status).
var statuses = []string{"PROCESSING", "PROCESSED", "FAILED", "DEAD", "PARKED"}

// listOrder is the listing's order, a total one ((source, event_id) is
// unique), and its page: $1 is one more than the page, to know whether
// there is a next one.
const listOrder = ` ORDER BY updated_at DESC, source DESC, event_id DESC LIMIT $1`

// eventSourcesSQL is every source in events, one index descent per source
// and partition (a loose index scan of events_key: PostgreSQL 15 has no
// skip scan), so that an event_id without its source is a key lookup.
const eventSourcesSQL = `WITH RECURSIVE s(source) AS (
    (SELECT min(source) FROM events)
  UNION ALL
    SELECT (SELECT min(e.source) FROM events e WHERE e.source > s.source) FROM s WHERE s.source IS NOT NULL)
  SELECT source FROM s WHERE source IS NOT NULL`

// query is the SQL of the listing f asks for and its arguments, written
// for the filters given so that each answers from an index in a time
// that does not grow with the table (docs/design.md, "Searching stays
// bounded"): an event_id is a key lookup; anything else is one scan per
// status of (status, updated_at) backwards (or of (customer_id, status),
// when the planner finds it cheaper), each at most a page, merged. The
// statuses are the constants above, never the request's text.
func (f *eventFilter) query() (string, []any) {
	conds, args := f.conditions()
	where := strings.Join(conds, " AND ")
	if f.eventID != "" {
		return `SELECT ` + eventColumns + ` FROM events WHERE ` + where + listOrder, args
	}
	var parts []string
	for _, s := range statuses {
		if f.status != "" && f.status != s {
			continue
		}
		scan := `(SELECT ` + eventColumns + ` FROM events WHERE status = '` + s + `' AND ` + where
		if f.customerID != "" {
			// A customer without events of this status (most have no
			// DEAD one) costs one probe of (customer_id, status), not a
			// scan of every event of the status looking for theirs.
			scan += ` AND EXISTS (SELECT FROM events c WHERE c.customer_id = $2::text AND c.status = '` + s + `')`
		}
		parts = append(parts, scan+listOrder+`)`)
	}
	if len(parts) == 1 {
		return parts[0], args
	}
	return `SELECT * FROM (` + strings.Join(parts, "\nUNION ALL ") + `) e` + listOrder, args
}

// conditions are f's filters as SQL (status only with an event_id), with
// their arguments: $1 is the page size plus one, $2 the customer if any.
func (f *eventFilter) conditions() ([]string, []any) {
	args := sqlArgs{f.limit + 1}
	if f.customerID != "" { // $2, which query's probes name
		args = append(args, f.customerID)
	}
	arg := args.add
	conds := []string{"true"}
	if f.customerID != "" {
		conds = append(conds, "customer_id = $2::text")
	}
	for _, c := range []struct{ column, value string }{{"source", f.source},
		{"event_id", f.eventID}, {"event_type", f.eventType}, {"status", f.status}} {
		// Without an event_id, query names the status in each scan.
		if c.value != "" && (c.column != "status" || f.eventID != "") {
			conds = append(conds, c.column+" = "+arg(c.value, "text"))
		}
	}
	if f.eventID != "" && f.source == "" {
		conds = append(conds, "source = ANY (ARRAY("+eventSourcesSQL+"))")
	}
	if f.since != nil {
		conds = append(conds, "updated_at >= "+arg(*f.since, "timestamptz"))
	}
	if f.until != nil {
		conds = append(conds, "updated_at < "+arg(*f.until, "timestamptz"))
	}
	if a := f.after; a != nil {
		t := arg(a.UpdatedAt, "timestamptz")
		// updated_at <= t bounds the index scan; the row compares the rest.
		conds = append(conds, "updated_at <= "+t,
			"(updated_at, source, event_id) < ("+t+", "+arg(a.Source, "text")+", "+arg(a.EventID, "text")+")")
	}
	return conds, args
}

// sqlArgs are a statement's arguments as it is written, condition by
// condition.
type sqlArgs []any

// add appends v and returns its placeholder, cast to typ.
func (a *sqlArgs) add(v any, typ string) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a)) + "::" + typ
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
	var msg string
	if f.since, f.until, msg = queryRange(c); msg != "" {
		return bad(msg)
	}
	if v := c.Query("cursor"); v != "" {
		raw, err := base64.RawURLEncoding.DecodeString(v)
		f.after = &cursor{}
		// Its source and event id reach PostgreSQL as text, which holds
		// no NUL (JSON's \u0000): a 503 from the driver otherwise.
		if err != nil || json.Unmarshal(raw, f.after) != nil || !storable(f.after.Source) || !storable(f.after.EventID) {
			return bad("cursor is not one this API returned")
		}
	}
	return f, true
}

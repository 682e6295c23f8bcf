package admin

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// MaxBulkReplay is the most events one bulk replay (POST /admin/replay)
// re-drives, and the largest limit it takes: each is a transaction of its
// own, so a request stays within seconds; the answer says how many more
// matched, and a second request replays those.
const MaxBulkReplay = 1000

// replayFilter selects the FAILED and DEAD events a bulk replay re-drives:
// a customer's, or those of a range of last update, optionally narrowed
// by source and status. Without a customer it needs since: "every dead
// event ever" is never one click away.
type replayFilter struct {
	customerID, source string
	statuses           []string // FAILED, DEAD or both
	since, until       *time.Time
	limit              int
}

// where is the condition that selects f's events and its arguments,
// written for the filters given (an absent one is no condition, not an
// OR that a generic plan could not use an index for).
func (f *replayFilter) where() (string, []any) {
	var args sqlArgs
	conds := []string{"status = ANY(" + args.add(f.statuses, "text[]") + ")"}
	if f.customerID != "" {
		conds = append(conds, "customer_id = "+args.add(f.customerID, "text"))
	}
	if f.source != "" {
		conds = append(conds, "source = "+args.add(f.source, "text"))
	}
	if f.since != nil {
		conds = append(conds, "updated_at >= "+args.add(*f.since, "timestamptz"))
	}
	if f.until != nil {
		conds = append(conds, "updated_at < "+args.add(*f.until, "timestamptz"))
	}
	return strings.Join(conds, " AND "), args
}

// parseReplayFilter reads the query; on a bad value it answers 400 and
// reports false.
func parseReplayFilter(c *gin.Context) (*replayFilter, bool) {
	f := &replayFilter{customerID: c.Query("customer_id"), source: c.Query("source"), limit: 100,
		statuses: []string{"FAILED", "DEAD"}}
	bad := func(msg string) (*replayFilter, bool) {
		fail(c, http.StatusBadRequest, "bad_request", msg)
		return nil, false
	}
	switch s := c.Query("status"); s {
	case "":
	case "FAILED", "DEAD":
		f.statuses = []string{s}
	default:
		return bad("status must be FAILED or DEAD (or absent, for both)")
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxBulkReplay {
			return bad("limit must be between 1 and " + strconv.Itoa(MaxBulkReplay))
		}
		f.limit = n
	}
	var msg string
	if f.since, f.until, msg = queryRange(c); msg != "" {
		return bad(msg)
	}
	if f.customerID == "" && f.since == nil {
		return bad("name a customer_id, or a range of last update starting at since")
	}
	return f, true
}

// queryRange reads since and until, a range of last update (each nil when
// absent), or a message saying what is wrong with them.
func queryRange(c *gin.Context) (since, until *time.Time, msg string) {
	if since, msg = queryTime(c, "since"); msg != "" {
		return nil, nil, msg
	}
	if until, msg = queryTime(c, "until"); msg != "" {
		return nil, nil, msg
	}
	if since != nil && until != nil && !since.Before(*until) {
		return nil, nil, "since must be before until"
	}
	return since, until, ""
}

// queryTime reads an RFC 3339 query parameter: nil when absent, or a
// message saying what is wrong with it.
func queryTime(c *gin.Context, name string) (*time.Time, string) {
	v := c.Query(name)
	if v == "" {
		return nil, ""
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, name + " must be an RFC 3339 time, such as 2026-11-30T17:00:00Z"
	}
	return &t, ""
}

package console

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"
)

// auditActions are the actions the tail's filter offers (AuditRecord).
var auditActions = []string{"ACCEPTED", "REJECTED", "DUPLICATE", "RETRY_ACCEPTED", "PROCESSING", "PROCESSED", "FAILED",
	"RETRY_SCHEDULED", "DEAD_LETTERED", "PARKED", "UNPARKED", "REPLAYED"}

// tailFilter is the live tail's filter, as its form sends it.
type tailFilter struct{ Source, CustomerID, Action string }

func (f tailFilter) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"source": f.Source, "customer_id": f.CustomerID, "action": f.Action} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// tailPage is the live audit tail: tail.js (a static file of the
// console's, as the CSP wants) opens an EventSource on tailStream and
// adds each decision to the table as it comes. The page is not boosted
// by htmx: leaving it is a page load, which closes the EventSource.
func (cs *console) tailPage(c *gin.Context) {
	f := tailFilter{Source: c.Query("source"), CustomerID: c.Query("customer_id"), Action: c.Query("action")}
	render(c, http.StatusOK, "tail", pageData{Title: "Live audit tail", Nav: "tail", Session: sessionOf(c), NoBoost: true,
		Data: struct {
			Form      tailFilter
			Actions   []string
			StreamURL string
		}{f, auditActions, Base + "/tail/stream?" + f.values().Encode()}})
}

// tailStream relays GET /admin/audit/stream to the browser as it comes,
// with the filter of the page and the Last-Event-ID of the browser's
// EventSource: each stream lasts Config.TailDuration, then the browser
// reconnects and resumes after the last decision it showed.
func (cs *console) tailStream(c *gin.Context) {
	q := tailFilter{Source: c.Query("source"), CustomerID: c.Query("customer_id"), Action: c.Query("action")}.values()
	q.Set("max_seconds", strconv.FormatFloat(cs.cfg.TailDuration.Seconds(), 'f', -1, 64))
	header := http.Header{}
	if id := c.GetHeader("Last-Event-ID"); id != "" {
		header.Set("Last-Event-ID", id)
	}
	cs.api.stream(c.Request, c.Writer, "/admin/audit/stream", q, header)
}

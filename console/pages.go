package console

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// eventView is an event as GET /admin/events and GET
// /admin/events/{source}/{event_id} answer it (schemas/openapi.yaml,
// Event), with the fields the pages show.
type eventView struct {
	Source      string      `json:"source"`
	EventID     string      `json:"event_id"`
	CustomerID  string      `json:"customer_id"`
	EventType   string      `json:"event_type"`
	Status      string      `json:"status"`
	Attempts    int         `json:"attempts"`
	Partition   *int32      `json:"partition"`
	Offset      *int64      `json:"offset"`
	LastError   string      `json:"last_error"`
	ReceivedAt  *time.Time  `json:"received_at"`
	UpdatedAt   *time.Time  `json:"updated_at"`
	ProcessedAt *time.Time  `json:"processed_at"`
	Trail       []auditView `json:"trail"`
}

// auditView is one record of an event's trail (AuditRecord).
type auditView struct {
	AuditID    string         `json:"audit_id"`
	Action     string         `json:"action"`
	Reason     string         `json:"reason"`
	HTTPStatus int            `json:"http_status"`
	Attempt    int            `json:"attempt"`
	Partition  *int32         `json:"partition"`
	Offset     *int64         `json:"offset"`
	Actor      string         `json:"actor"`
	Instance   string         `json:"instance"`
	RequestID  string         `json:"request_id"`
	At         *time.Time     `json:"at"`
	Detail     map[string]any `json:"detail"`
}

// blockedView is a customer in trouble (BlockedCustomer).
type blockedView struct {
	CustomerID      string     `json:"customer_id"`
	Source          string     `json:"source"`
	State           string     `json:"state"`
	BlockingEventID string     `json:"blocking_event_id"`
	NextAttemptAt   *time.Time `json:"next_attempt_at"`
	Since           *time.Time `json:"since"`
	Waiting         int        `json:"waiting"`
}

// searchForm is the events search as the page's form sends it. Times are
// the browser's datetime-local values, read as UTC.
type searchForm struct {
	Source, EventID, CustomerID, Status, EventType, Since, Until string
}

var statuses = []string{"PROCESSED", "FAILED", "DEAD", "PARKED", "PROCESSING"}

const pageSize = 50

func (cs *console) eventsPage(c *gin.Context) {
	f := searchForm{Source: c.Query("source"), EventID: c.Query("event_id"), CustomerID: c.Query("customer_id"),
		Status: c.Query("status"), EventType: c.Query("event_type"), Since: c.Query("since"), Until: c.Query("until")}
	data := struct {
		Form              searchForm
		Statuses          []string
		Events            []eventView
		NextURL, FirstURL string
	}{Form: f, Statuses: statuses}
	p := pageData{Title: "Events", Nav: "events", Session: sessionOf(c), Data: &data}
	filters := url.Values{}
	for k, v := range map[string]string{"source": f.Source, "event_id": f.EventID, "customer_id": f.CustomerID,
		"status": f.Status, "event_type": f.EventType, "since": f.Since, "until": f.Until} {
		if v != "" {
			filters.Set(k, v)
		}
	}
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	for k, v := range filters {
		q[k] = v
	}
	for _, k := range []string{"since", "until"} {
		if v := filters.Get(k); v != "" {
			t, err := parseLocalTime(v)
			if err != nil {
				p.Error = k + ": " + err.Error()
				render(c, http.StatusBadRequest, "events", p)
				return
			}
			q.Set(k, t.Format(time.RFC3339))
		}
	}
	if cur := c.Query("cursor"); cur != "" {
		q.Set("cursor", cur)
		data.FirstURL = Base + "/events?" + filters.Encode()
	}
	var page struct {
		Events     []eventView `json:"events"`
		NextCursor string      `json:"next_cursor"`
	}
	if err := cs.api.as(c.Request, "", http.MethodGet, "/admin/events", q, http.StatusOK, &page); err != nil {
		var e *apiError
		if errors.As(err, &e) && e.Status == http.StatusBadRequest {
			p.Error = e.Message
			render(c, http.StatusBadRequest, "events", p)
			return
		}
		failed(c, err)
		return
	}
	data.Events = page.Events
	if page.NextCursor != "" {
		next := url.Values{"cursor": {page.NextCursor}}
		for k, v := range filters {
			next[k] = v
		}
		data.NextURL = Base + "/events?" + next.Encode()
	}
	render(c, http.StatusOK, "events", p)
}

// parseLocalTime reads a datetime-local value (minutes, or seconds) as UTC.
func parseLocalTime(v string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not a time such as 2026-11-30T17:05 (UTC)")
}

// bodyView is an event's body as the page shows it.
type bodyView struct {
	Text string // pretty-printed when it is JSON
	Note string // why there is none, or that it was cut
}

func (cs *console) eventPage(c *gin.Context) {
	source, eventID := c.Param("source"), c.Param("event_id")
	var ev eventView
	if err := cs.api.as(c.Request, "", http.MethodGet, eventPath("/admin/events", source, eventID), nil, http.StatusOK, &ev); err != nil {
		failed(c, err)
		return
	}
	var body struct {
		Size      int    `json:"size"`
		Truncated bool   `json:"truncated"`
		Encoding  string `json:"encoding"`
		Body      string `json:"body"`
	}
	bv := bodyView{}
	err := cs.api.as(c.Request, "", http.MethodGet, eventPath("/admin/events", source, eventID)+"/body", nil, http.StatusOK, &body)
	var e *apiError
	switch {
	case errors.As(err, &e) && e.Status == http.StatusNotFound:
		bv.Note = e.Message
	case err != nil:
		failed(c, err)
		return
	default:
		bv = showBody(body.Body, body.Encoding, body.Size, body.Truncated)
	}
	s := sessionOf(c)
	render(c, http.StatusOK, "event", pageData{Title: source + " / " + eventID, Nav: "events", Session: s, Flash: s.takeFlash(),
		Data: struct {
			Event eventView
			Body  bodyView
			Live  bool
		}{ev, bv, ev.Status == "FAILED" || ev.Status == "PARKED" || ev.Status == "PROCESSING"}})
}

// showBody pretty-prints a JSON body; anything else is shown as it came
// (base64 when it is not UTF-8).
func showBody(text, encoding string, size int, truncated bool) bodyView {
	bv := bodyView{Text: text}
	var out bytes.Buffer
	if encoding == "utf-8" && !truncated && json.Indent(&out, []byte(text), "", "  ") == nil {
		bv.Text = out.String()
	}
	if encoding == "base64" {
		bv.Note = "Not UTF-8 text: shown in base64."
		if raw, err := base64.StdEncoding.DecodeString(text); err == nil {
			bv.Note += " " + strconv.Itoa(len(raw)) + " bytes shown."
		}
	}
	if truncated {
		bv.Note += " The body is " + strconv.Itoa(size) + " bytes; only its beginning is shown."
	}
	return bv
}

func (cs *console) customersPage(c *gin.Context) {
	var all []blockedView
	if err := cs.api.as(c.Request, "", http.MethodGet, "/admin/customers/blocked", nil, http.StatusOK, &all); err != nil {
		failed(c, err)
		return
	}
	byState := map[string][]blockedView{}
	for _, b := range all {
		byState[b.State] = append(byState[b.State], b)
	}
	s := sessionOf(c)
	render(c, http.StatusOK, "customers", pageData{Title: "Customers in trouble", Nav: "customers", Session: s, Flash: s.takeFlash(),
		Data: struct{ Parked, Blocked, Draining []blockedView }{byState["PARKED"], byState["BLOCKED"], byState["DRAINING"]}})
}

// skipPage asks to confirm skipping a parked customer's blocker, naming
// the event that stays DEAD and how many events run without it.
func (cs *console) skipPage(c *gin.Context) {
	var parked []blockedView
	if err := cs.api.as(c.Request, "", http.MethodGet, "/admin/customers/parked", nil, http.StatusOK, &parked); err != nil {
		failed(c, err)
		return
	}
	source, customer := c.Query("source"), c.Query("customer_id")
	p := pageData{Title: "Skip a blocker", Nav: "customers", Session: sessionOf(c)}
	for _, b := range parked {
		if b.Source == source && b.CustomerID == customer {
			p.Data = b
			render(c, http.StatusOK, "skip", p)
			return
		}
	}
	p.Error = "Customer " + customer + " of source " + source + " is not parked any more."
	render(c, http.StatusNotFound, "skip", p)
}

// unpark asks the admin API to unpark a customer, as the operator's
// session: by replaying its blocker, or (skip_blocker) by leaving the
// blocker DEAD, which the form names (blocker) so that the API refuses
// if the customer is blocked by another event by now.
func (cs *console) unpark(c *gin.Context) {
	s := sessionOf(c)
	customer, source, blocker := c.PostForm("customer_id"), c.PostForm("source"), c.PostForm("blocker")
	skip := c.PostForm("skip_blocker") == "true"
	if customer == "" {
		refuse(c, http.StatusBadRequest, "Which customer? The form did not say.")
		return
	}
	q := url.Values{}
	if source != "" {
		q.Set("source", source)
	}
	if skip {
		q.Set("skip_blocker", "true")
		q.Set("blocker", blocker)
	}
	err := cs.api.as(c.Request, operator(s), http.MethodPost, "/admin/customers/"+segment(customer)+"/unpark", q, http.StatusAccepted, nil)
	var e *apiError
	switch {
	case err == nil && skip:
		s.setFlash("Unparking " + customer + " (" + source + "): " + blocker + " stays DEAD; the events behind it run now, in order.")
	case err == nil:
		s.setFlash("Unparking " + customer + " (" + source + "): its blocker is replayed now; when it succeeds the events behind it run, in order.")
	case errors.As(err, &e):
		s.setFlash("Not unparked: " + e.Message + " (" + e.Code + ").")
	default:
		failed(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, Base+"/customers")
}

// replay asks the admin API to replay a FAILED or DEAD event, as the
// operator's session, and shows the event again with the outcome.
func (cs *console) replay(c *gin.Context) {
	s := sessionOf(c)
	source, eventID := c.PostForm("source"), c.PostForm("event_id")
	if source == "" || eventID == "" {
		refuse(c, http.StatusBadRequest, "Which event? The form did not say.")
		return
	}
	err := cs.api.as(c.Request, operator(s), http.MethodPost, eventPath("/admin/events", source, eventID)+"/replay", nil, http.StatusAccepted, nil)
	var e *apiError
	switch {
	case err == nil:
		s.setFlash("Replaying " + eventID + ": it runs again in its customer's order.")
	case errors.As(err, &e):
		s.setFlash("Not replayed: " + e.Message + " (" + e.Code + ").")
	default:
		failed(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, eventPath(Base+"/events", source, eventID))
}

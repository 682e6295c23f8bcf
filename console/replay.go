package console

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
)

// replayForm is a bulk replay's filter as the page's form sends it: times
// are datetime-local values, read as UTC, like the search's.
type replayForm struct {
	CustomerID, Source, Status, Since, Until, Limit string
}

func readReplayForm(get func(string) string) replayForm {
	return replayForm{CustomerID: get("customer_id"), Source: get("source"), Status: get("status"),
		Since: get("since"), Until: get("until"), Limit: get("limit")}
}

// empty: the form was not sent yet.
func (f replayForm) empty() bool { return f == replayForm{} }

// URL is the replay page with the form filled in. A whole URL, not a
// query for the template to append after "?": html/template escapes a
// value there as one query component ("=" as %3d, "&" as %26).
func (f replayForm) URL() string { return Base + "/replay?" + f.values().Encode() }

// values are the form's fields for a link or hidden inputs.
func (f replayForm) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"customer_id": f.CustomerID, "source": f.Source, "status": f.Status,
		"since": f.Since, "until": f.Until, "limit": f.Limit} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// query is the admin API's query for the form; a time it cannot read is
// an error naming the field.
func (f replayForm) query() (url.Values, error) {
	q := f.values()
	for _, k := range []string{"since", "until"} {
		if v := q.Get(k); v != "" {
			t, err := parseLocalTime(v)
			if err != nil {
				return nil, errors.New(k + ": " + err.Error())
			}
			q.Set(k, t.Format(time.RFC3339Nano))
		}
	}
	return q, nil
}

// replayPreview is GET /admin/replay/preview's answer.
type replayPreview struct {
	Matched       int           `json:"matched"`
	Limit         int           `json:"limit"`
	MaxPerRequest int           `json:"max_per_request"`
	Events        []bulkEventVw `json:"events"`
}

// bulkEventVw is an event a bulk replay selected (BulkEvent).
type bulkEventVw struct {
	Source     string     `json:"source"`
	EventID    string     `json:"event_id"`
	CustomerID string     `json:"customer_id"`
	EventType  string     `json:"event_type"`
	Status     string     `json:"status"`
	UpdatedAt  *time.Time `json:"updated_at"`
}

// replayPage is the bulk replay's form; with a filter it is the
// confirmation: how many events match, and every one that the replay
// re-drives, named. The confirmation's form fixes until at the time of
// the preview (when none was given), so that an event failing after the
// operator looked is not replayed unseen.
func (cs *console) replayPage(c *gin.Context) {
	f := readReplayForm(c.Query)
	s := sessionOf(c)
	data := struct {
		Form     replayForm
		Preview  *replayPreview
		Confirm  url.Values
		Statuses []string
	}{Form: f, Statuses: []string{"FAILED", "DEAD"}}
	p := pageData{Title: "Replay dead and failed events", Nav: "replay", Session: s, Flash: s.takeFlash(), Data: &data}
	if f.empty() {
		render(c, http.StatusOK, "replay", p)
		return
	}
	if f.Until == "" {
		// Milliseconds: an event that failed within the last second is
		// in the preview, so in the replay.
		f.Until = time.Now().UTC().Format("2006-01-02T15:04:05.000")
		data.Form = f
	}
	q, err := f.query()
	if err != nil {
		p.Error = err.Error()
		render(c, http.StatusBadRequest, "replay", p)
		return
	}
	var pv replayPreview
	if err := cs.api.as(c.Request, "", http.MethodGet, "/admin/replay/preview", q, http.StatusOK, &pv); err != nil {
		var e *apiError
		if errors.As(err, &e) && e.Status == http.StatusBadRequest {
			p.Error = e.Message
			render(c, http.StatusBadRequest, "replay", p)
			return
		}
		failed(c, err)
		return
	}
	data.Preview, data.Confirm = &pv, f.values()
	render(c, http.StatusOK, "replay", p)
}

// replayResult is POST /admin/replay's answer.
type replayResult struct {
	Matched  int           `json:"matched"`
	Replayed []bulkEventVw `json:"replayed"`
	Skipped  []struct {
		Source  string `json:"source"`
		EventID string `json:"event_id"`
		Reason  string `json:"reason"`
	} `json:"skipped"`
	Remaining int `json:"remaining"`
}

// bulkReplay asks the admin API to replay what the confirmation named,
// as the operator's session, and sends the browser to the batch's page,
// which follows the replayed events until each is PROCESSED or DEAD.
func (cs *console) bulkReplay(c *gin.Context) {
	s := sessionOf(c)
	f := readReplayForm(c.PostForm)
	q, err := f.query()
	if err != nil || f.empty() {
		refuse(c, http.StatusBadRequest, "The form did not say which events to replay.")
		return
	}
	started := time.Now()
	var res replayResult
	err = cs.api.as(c.Request, operator(s), http.MethodPost, "/admin/replay", q, http.StatusAccepted, &res)
	var e *apiError
	switch {
	case errors.As(err, &e):
		s.setFlash("Nothing replayed: " + e.Message + " (" + e.Code + ").")
		c.Redirect(http.StatusSeeOther, Base+"/replay?"+f.values().Encode())
		return
	case err != nil:
		failed(c, err)
		return
	}
	id := s.addBatch(&replayBatch{Form: f, Started: started, Result: res})
	c.Redirect(http.StatusSeeOther, Base+"/replay/batches/"+id)
}

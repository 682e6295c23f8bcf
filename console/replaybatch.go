package console

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// replayBatch is a bulk replay an operator made, kept in their session so
// that its page can follow the replayed events (a list of up to 1000
// ids does not fit a URL).
type replayBatch struct {
	ID      string
	Form    replayForm
	Started time.Time
	Result  replayResult
}

// maxBatches a session keeps; past it the oldest is forgotten.
const maxBatches = 20

func (s *session) addBatch(b *replayBatch) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batchSeq++
	b.ID = strconv.Itoa(s.batchSeq)
	s.batches = append(s.batches, b)
	if len(s.batches) > maxBatches {
		s.batches = s.batches[1:]
	}
	return b.ID
}

func (s *session) batch(id string) *replayBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		if b.ID == id {
			return b
		}
	}
	return nil
}

// batchRow is a replayed event with its status now.
type batchRow struct {
	bulkEventVw
	Now string // "" when not found in the listing
}

// maxOutcomePages bounds the admin API pages (of 1000) a batch's page
// reads to find its events' statuses.
const maxOutcomePages = 5

// batchPage shows a bulk replay's outcome: each replayed event's status
// now, refreshed until none can change any more (PROCESSED or DEAD). The
// statuses come from GET /admin/events: the events of the batch's
// customer and source updated since the replay started, which every
// replayed event is (the replay updated it).
func (cs *console) batchPage(c *gin.Context) {
	s := sessionOf(c)
	b := s.batch(c.Param("id"))
	if b == nil {
		refuse(c, http.StatusNotFound, "No such bulk replay in this session (a session keeps its last "+strconv.Itoa(maxBatches)+").")
		return
	}
	now, err := cs.currentStatuses(c.Request, b)
	if err != nil {
		failed(c, err)
		return
	}
	rows, counts, live := make([]batchRow, 0, len(b.Result.Replayed)), map[string]int{}, false
	for _, e := range b.Result.Replayed {
		st := now[e.Source+"\x00"+e.EventID]
		rows = append(rows, batchRow{e, st})
		counts[st]++
		live = live || (st != "PROCESSED" && st != "DEAD")
	}
	render(c, http.StatusOK, "batch", pageData{Title: "Bulk replay " + b.ID, Nav: "replay", Session: s, Flash: s.takeFlash(),
		Data: struct {
			Batch  *replayBatch
			Rows   []batchRow
			Counts map[string]int
			Live   bool
		}{b, rows, counts, live}})
}

// currentStatuses maps source NUL event id to status, for the events of
// b's customer and source updated since b started.
func (cs *console) currentStatuses(from *http.Request, b *replayBatch) (map[string]string, error) {
	q := url.Values{"limit": {"1000"}, "since": {b.Started.Add(-time.Second).UTC().Format(time.RFC3339)}}
	if b.Form.CustomerID != "" {
		q.Set("customer_id", b.Form.CustomerID)
	}
	if b.Form.Source != "" {
		q.Set("source", b.Form.Source)
	}
	out := map[string]string{}
	for range maxOutcomePages {
		var page struct {
			Events     []eventView `json:"events"`
			NextCursor string      `json:"next_cursor"`
		}
		if err := cs.api.as(from, "", http.MethodGet, "/admin/events", q, http.StatusOK, &page); err != nil {
			return nil, err
		}
		for _, e := range page.Events {
			out[e.Source+"\x00"+e.EventID] = e.Status
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	return out, nil
}

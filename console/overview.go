package console

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// overviewView is GET /admin/overview's answer (schemas/openapi.yaml).
type overviewView struct {
	At    *time.Time `json:"at"`
	Rates *struct {
		Since   *time.Time       `json:"since"`
		Minutes []map[string]any `json:"minutes"`
	} `json:"rates"`
	ConsumerLag []struct {
		Group      string `json:"group"`
		Partition  int32  `json:"partition"`
		NextOffset *int64 `json:"next_offset"`
		EndOffset  *int64 `json:"end_offset"`
		Lag        *int64 `json:"lag"`
	} `json:"consumer_lag"`
	Customers  map[string]int64 `json:"customers"`
	AuditRelay *struct {
		PendingCommits int64 `json:"pending_commits"`
		// A value, not a pointer, because the template formats it with
		// printf, which does not follow pointers; absent (null) reads as 0,
		// which the template leaves out like nothing pending.
		OldestPendingSec float64 `json:"oldest_pending_seconds"`
	} `json:"audit_relay"`
	Ready map[string]string `json:"ready"`
}

// series is one outcome's last hour, drawn as 60 bars.
type series struct {
	Name        string
	Total, Last int64
	Bars        []bar
}

// bar is one minute's bar of a chart (SVG attributes: no inline style,
// which the CSP forbids).
type bar struct {
	X, Y, H float64
	Title   string
}

var outcomes = []string{"accepted", "rejected", "duplicate", "processed", "failed", "dead"}

const chartHeight = 32.0

// chart turns the per-minute counts into a series per outcome.
func chart(minutes []map[string]any) []series {
	out := make([]series, 0, len(outcomes))
	for _, name := range outcomes {
		s := series{Name: name}
		peak := 0.0
		vals := make([]float64, len(minutes))
		for i, m := range minutes {
			v, _ := m[name].(float64)
			vals[i], peak = v, max(peak, v)
			s.Total += int64(v)
		}
		if n := len(vals); n > 0 {
			s.Last = int64(vals[n-1])
		}
		for i, v := range vals {
			h := 0.0
			if peak > 0 {
				h = max(v/peak*chartHeight, 0)
			}
			start, _ := minutes[i]["start"].(string)
			if t, err := time.Parse(time.RFC3339, start); err == nil {
				start = t.UTC().Format("15:04")
			}
			s.Bars = append(s.Bars, bar{X: float64(i * 4), Y: chartHeight - h, H: h, Title: start + " UTC: " + strconv.FormatInt(int64(v), 10)})
		}
		out = append(out, s)
	}
	return out
}

// overviewPage shows the engine at a glance, refreshed every 5 s.
func (cs *console) overviewPage(c *gin.Context) {
	var o overviewView
	if err := cs.api.as(c.Request, "", http.MethodGet, "/admin/overview", nil, http.StatusOK, &o); err != nil {
		failed(c, err)
		return
	}
	var rates []series
	if o.Rates != nil {
		rates = chart(o.Rates.Minutes)
	}
	s := sessionOf(c)
	render(c, http.StatusOK, "overview", pageData{Title: "Overview", Nav: "overview", Session: s, Flash: s.takeFlash(),
		Data: struct {
			O     overviewView
			Rates []series
		}{o, rates}})
}

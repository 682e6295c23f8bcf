package admin

import (
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookstream/hookstream/internal/wire"
)

// Bounds of GET /admin/audit/stream: a stream ends on its own, so that a
// client (or schemathesis) that never closes it does not hold a Kafka
// client for ever; an EventSource reconnects by itself, resuming at
// Last-Event-ID.
const (
	DefaultStreamDuration = 30 * time.Second
	MaxStreamDuration     = 5 * time.Minute
	DefaultStreamRecords  = 1000
	MaxStreamRecords      = 10000
)

var auditActions = []string{string(wire.ActionAccepted), string(wire.ActionRejected), string(wire.ActionDuplicate),
	string(wire.ActionRetryAccepted), string(wire.ActionProcessing), string(wire.ActionProcessed), string(wire.ActionFailed),
	string(wire.ActionRetryScheduled), string(wire.ActionDeadLettered), string(wire.ActionParked),
	string(wire.ActionUnparked), string(wire.ActionReplayed)}

// streamOptions is what GET /admin/audit/stream was asked for.
type streamOptions struct {
	source, customerID, action string
	duration                   time.Duration
	records                    int
	// from is where to start per partition (the cursor, or Last-Event-ID);
	// nil: the end of each partition, now.
	from map[int32]int64
}

func (o *streamOptions) matches(r *wire.AuditRecord) bool {
	return (o.source == "" || r.Source == o.source) && (o.customerID == "" || r.CustomerID == o.customerID) &&
		(o.action == "" || string(r.Action) == o.action)
}

// parseStreamOptions reads the query; on a bad value it answers 400 and
// reports false.
func parseStreamOptions(c *gin.Context) (*streamOptions, bool) {
	o := &streamOptions{source: c.Query("source"), customerID: c.Query("customer_id"), action: c.Query("action"),
		duration: DefaultStreamDuration, records: DefaultStreamRecords}
	bad := func(msg string) (*streamOptions, bool) {
		fail(c, http.StatusBadRequest, "bad_request", msg)
		return nil, false
	}
	if o.action != "" && !slices.Contains(auditActions, o.action) {
		return bad("action must be one of " + strings.Join(auditActions, ", "))
	}
	if v := c.Query("max_seconds"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || !(s > 0) || s > MaxStreamDuration.Seconds() {
			return bad("max_seconds must be more than 0 and at most " + strconv.Itoa(int(MaxStreamDuration.Seconds())))
		}
		o.duration = time.Duration(s * float64(time.Second))
	}
	if v := c.Query("max_records"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxStreamRecords {
			return bad("max_records must be between 1 and " + strconv.Itoa(MaxStreamRecords))
		}
		o.records = n
	}
	cur := c.Query("cursor")
	if cur == "" {
		cur = c.GetHeader("Last-Event-ID")
	}
	if cur != "" {
		from, ok := parseStreamCursor(cur)
		if !ok {
			return bad("cursor (or Last-Event-ID) is not one this stream sent")
		}
		o.from = from
	}
	return o, true
}

// streamCursor is the position after the last record sent: the next
// offset of each partition, "0:12,1:40".
func streamCursor(next map[int32]int64) string {
	parts := make([]int32, 0, len(next))
	for p := range next {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)) + ":" + strconv.FormatInt(next[p], 10))
	}
	return b.String()
}

func parseStreamCursor(s string) (map[int32]int64, bool) {
	out := map[int32]int64{}
	for _, part := range strings.Split(s, ",") {
		ps, os, ok := strings.Cut(part, ":")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 || len(out) >= 10000 {
			return nil, false
		}
		out[int32(p)] = o
	}
	return out, true
}

package ingest

import (
	"log/slog"
	"sync"
	"time"

	"github.com/hookstream/hookstream/internal/wire"
)

// Kinds of audit records the receiver could not publish, the label of
// hookstream_ingest_audit_publish_failures_total.
const (
	// auditKindRejected: a REJECTED record, best effort: the rejection
	// was answered all the same.
	auditKindRejected = "rejected"
	// auditKindDuplicate: a DUPLICATE record; the request was answered
	// 503 instead of its 2xx or 409.
	auditKindDuplicate = "duplicate"
)

func init() {
	// Both series exist from the start, so that an alert on their rate
	// sees a zero rather than nothing.
	auditFailuresTotal.WithLabelValues(auditKindRejected)
	auditFailuresTotal.WithLabelValues(auditKindDuplicate)
}

// auditFailureLogInterval is how often at most a failed audit record is
// logged.
const auditFailureLogInterval = 10 * time.Second

// auditFailureLog counts every audit record not published and logs one of
// them at most once per interval, with how many were not logged since the
// last line: an audit topic that is down fails every request, and a line
// for each would bury the log, while counting alone would leave it silent.
type auditFailureLog struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time // time.Now; tests set a clock of their own

	mu      sync.Mutex
	next    time.Time // no line before this
	skipped int       // failures since the last line
}

func newAuditFailureLog(log *slog.Logger, interval time.Duration) *auditFailureLog {
	return &auditFailureLog{log: log, interval: interval, now: time.Now}
}

func (l *auditFailureLog) failed(kind string, rec *wire.AuditRecord, err error) {
	auditFailuresTotal.WithLabelValues(kind).Inc()
	l.mu.Lock()
	now := l.now()
	if now.Before(l.next) {
		l.skipped++
		l.mu.Unlock()
		return
	}
	skipped := l.skipped
	l.next, l.skipped = now.Add(l.interval), 0
	l.mu.Unlock()
	l.log.Error("audit record not published", "kind", kind, "request_id", rec.RequestID, "audit_id", rec.AuditID,
		"action", rec.Action, "error", err, "not_logged_since_last", skipped, "log_interval", l.interval)
}

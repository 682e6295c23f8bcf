package ingest

import (
	"sync"
	"time"

	"github.com/hookstream/hookstream/internal/wire"
)

// Every rejection is counted (hookstream_ingest_rejections_total), but an
// anonymous flood must not write without bound: each REJECTED record was a
// waited Kafka record and an audit_log row under a key of its own, so 200
// junk POSTs made 200 rows. Rejections therefore get a record of their own
// only within a rate per (source, reason); past it they are folded into a
// summary record of that (source, reason), written once per interval while
// rejections arrive: how many, first and last seen, and a few sample
// request ids. The pairs are bounded: sources are the configured ones,
// with one pair for every unknown source name together, and reasons are
// the error codes. So neither the records an attacker makes nor their keys
// grow with what it sends, and an unknown name is never a key or a label.

// RejectionAuditConfig bounds the audit records of rejected requests.
// Zero fields take the defaults named.
type RejectionAuditConfig struct {
	// PerSecond and Burst are each (source, reason)'s budget of rejections
	// recorded one by one: a token bucket of Burst tokens, PerSecond back
	// a second. Defaults 1 and 20.
	PerSecond float64
	Burst     int
	// Interval is how often a (source, reason)'s summary of the rejections
	// past its budget is written. Default 10s.
	Interval time.Duration
	// Samples is how many request ids a summary keeps. Default 5.
	Samples int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c RejectionAuditConfig) WithDefaults() RejectionAuditConfig {
	if c.PerSecond == 0 {
		c.PerSecond = 1
	}
	if c.Burst == 0 {
		c.Burst = 20
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.Samples == 0 {
		c.Samples = 5
	}
	return c
}

func (c RejectionAuditConfig) validate() string {
	switch {
	case c.PerSecond < 0, c.Burst < 0, c.Samples < 0:
		return "RejectionAudit.PerSecond, Burst and Samples must be positive"
	case c.Interval < 0:
		return "RejectionAudit.Interval must be positive"
	}
	return ""
}

// rejectionKey is a (source, reason); source is "" for every unknown one.
type rejectionKey struct{ source, reason string }

type rejectionState struct {
	tokens float64
	at     time.Time

	// The summary being gathered; count 0 = none.
	count       int64
	status      int
	first, last time.Time
	samples     []string
	timer       *time.Timer
}

// rejectionAudit decides which rejections are recorded one by one and
// gathers the others into summaries, which emit writes.
type rejectionAudit struct {
	cfg      RejectionAuditConfig
	instance string
	emit     func(*wire.AuditRecord)
	now      func() time.Time // time.Now; tests set a clock of their own

	mu     sync.Mutex
	states map[rejectionKey]*rejectionState
	closed bool
}

func newRejectionAudit(cfg RejectionAuditConfig, instance string, emit func(*wire.AuditRecord)) *rejectionAudit {
	return &rejectionAudit{cfg: cfg, instance: instance, emit: emit, now: time.Now, states: make(map[rejectionKey]*rejectionState)}
}

// admit reports whether the rejection of the request requestID (at
// receivedAt) gets a record of its own; if not, it is in the next summary.
func (a *rejectionAudit) admit(k rejectionKey, status int, requestID string, receivedAt time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return true
	}
	s := a.states[k]
	now := a.now()
	if s == nil {
		s = &rejectionState{tokens: float64(a.cfg.Burst), at: now}
		a.states[k] = s
	}
	if d := now.Sub(s.at); d > 0 {
		s.tokens = min(float64(a.cfg.Burst), s.tokens+d.Seconds()*a.cfg.PerSecond)
		s.at = now
	}
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	if s.count == 0 {
		s.first = receivedAt
		s.samples = s.samples[:0]
		s.timer = time.AfterFunc(a.cfg.Interval, func() { a.flush(k) })
	}
	s.count++
	s.status = status
	s.last = receivedAt
	if len(s.samples) < a.cfg.Samples {
		s.samples = append(s.samples, requestID)
	}
	return false
}

// flush writes k's summary, if it has one.
func (a *rejectionAudit) flush(k rejectionKey) {
	a.mu.Lock()
	rec := a.take(k, a.states[k])
	a.mu.Unlock()
	if rec != nil {
		a.emit(rec)
	}
}

// take returns s's summary as a record and starts a new one. a.mu is held.
func (a *rejectionAudit) take(k rejectionKey, s *rejectionState) *wire.AuditRecord {
	if s == nil || s.count == 0 {
		return nil
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	samples := make([]any, len(s.samples))
	for i, id := range s.samples {
		samples[i] = id
	}
	rec := &wire.AuditRecord{
		SchemaVersion: wire.AuditSchemaVersion,
		AuditID:       newID(),
		Source:        k.source,
		Action:        wire.ActionRejected,
		Reason:        k.reason,
		HTTPStatus:    s.status,
		Actor:         wire.ActorIngest,
		Instance:      a.instance,
		// A summary is no request's: its key (the request id) is its own,
		// one per (source, reason) and interval.
		RequestID: newID(),
		At:        s.last,
		Detail: map[string]any{wire.DetailSummary: map[string]any{
			"count":              s.count,
			"first_seen":         s.first.Format(time.RFC3339Nano),
			"last_seen":          s.last.Format(time.RFC3339Nano),
			"sample_request_ids": samples,
		}},
	}
	s.count = 0
	return rec
}

// close writes every pending summary; rejections after it are recorded
// one by one.
func (a *rejectionAudit) close() {
	a.mu.Lock()
	a.closed = true
	var recs []*wire.AuditRecord
	for k, s := range a.states {
		if rec := a.take(k, s); rec != nil {
			recs = append(recs, rec)
		}
	}
	a.mu.Unlock()
	for _, rec := range recs {
		a.emit(rec)
	}
}

package loadgen

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/internal/wire"
)

// VerifyConfig says where the outcome of a run is.
type VerifyConfig struct {
	Pool    *pgxpool.Pool
	Brokers []string
	// KafkaOpts are applied to the client that reads the audit topic (TLS,
	// SASL). Default none.
	KafkaOpts   []kgo.Opt
	AuditTopic  string // default hookstream.audit
	EventsTopic string // default hookstream.events
	// Group is the consumer group that processes the events topic (whose
	// processed records audit.Verify reconciles). Default "hookstream".
	Group  string
	Source string
	// Wait bounds how long processing may take to catch up. Default 5m.
	Wait time.Duration
	// Since is the start of the run (for the audit comparison window).
	Since time.Time
}

// Verification is what Verify found.
type Verification struct {
	OK         bool          `json:"ok"`
	Accepted   int           `json:"accepted"`
	Processed  int           `json:"processed"`
	Rejected   int           `json:"rejected"`
	Violations []string      `json:"violations"`
	Audit      *audit.Report `json:"audit,omitempty"`
	// EndToEndMs is, over the accepted events that were processed, the
	// time from the receiver's arrival stamp (received_at, a little before
	// its 202) to the PROCESSED write (processed_at, just before its
	// commit), from PostgreSQL.
	EndToEndMs Percentiles `json:"end_to_end_ms"`
}

// Verify checks, from PostgreSQL and the audit trail, that every event
// answered 202 was PROCESSED exactly once, that no rejected request was
// processed, that each customer's events were processed in sequence order,
// and that the audit topic and table agree.
func Verify(ctx context.Context, cfg VerifyConfig, sum *Summary) (*Verification, error) {
	if cfg.Wait <= 0 {
		cfg.Wait = 5 * time.Minute
	}
	vr := &verifier{cfg: cfg, v: &Verification{Violations: []string{}}, accepted: map[string]Sent{},
		deadline: time.Now().Add(cfg.Wait)}
	for _, s := range sum.Sent {
		switch {
		case s.Status == 202 && s.Kind != "bad":
			vr.accepted[s.EventID] = s
		case s.Kind == "bad":
			vr.bad = append(vr.bad, s.EventID)
			vr.v.Rejected++
		}
	}
	vr.v.Accepted = len(vr.accepted)
	for id := range vr.accepted {
		vr.ids = append(vr.ids, id)
	}
	for _, check := range []func(context.Context) error{vr.processed, vr.endToEnd, vr.once, vr.rejected, vr.order, vr.audit} {
		if err := check(ctx); err != nil {
			return nil, err
		}
	}
	vr.v.OK = len(vr.v.Violations) == 0
	return vr.v, nil
}

// verifier checks a run's events in the database, each check adding to
// v's violations.
type verifier struct {
	cfg      VerifyConfig
	v        *Verification
	accepted map[string]Sent // by event id: the events answered 202
	ids      []string        // the accepted events' ids
	bad      []string        // the ids of the bad requests
	deadline time.Time       // until when to wait for the pipeline
}

// processed waits until every accepted event is PROCESSED, or the
// deadline, and reports those that are not.
func (vr *verifier) processed(ctx context.Context) error {
	var notDone []string
	for {
		rows, err := vr.cfg.Pool.Query(ctx, `SELECT event_id, status FROM events WHERE source = $1 AND event_id = ANY($2)`, vr.cfg.Source, vr.ids)
		if err != nil {
			return err
		}
		status := map[string]string{}
		var id, st string
		if _, err := pgx.ForEachRow(rows, []any{&id, &st}, func() error { status[id] = st; return nil }); err != nil {
			return err
		}
		notDone = notDone[:0]
		for _, id := range vr.ids {
			if status[id] != "PROCESSED" {
				notDone = append(notDone, id+" ("+orNone(status[id])+")")
			}
		}
		vr.v.Processed = len(vr.ids) - len(notDone)
		if len(notDone) == 0 || time.Now().After(vr.deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // polling for the consumer to catch up
		}
	}
	sort.Strings(notDone)
	for _, s := range limit(notDone, 20) {
		vr.v.Violations = append(vr.v.Violations, "accepted but not PROCESSED: "+s)
	}
	return nil
}

// endToEnd is the percentiles of received to processed.
func (vr *verifier) endToEnd(ctx context.Context) error {
	rows, err := vr.cfg.Pool.Query(ctx, `SELECT (extract(epoch FROM processed_at - received_at) * 1e6)::bigint FROM events
WHERE source = $1 AND event_id = ANY($2) AND status = 'PROCESSED' AND received_at IS NOT NULL`, vr.cfg.Source, vr.ids)
	if err != nil {
		return err
	}
	var us int64
	var e2e []time.Duration
	if _, err := pgx.ForEachRow(rows, []any{&us}, func() error { e2e = append(e2e, time.Duration(us)*time.Microsecond); return nil }); err != nil {
		return err
	}
	vr.v.EndToEndMs = percentiles(e2e)
	return nil
}

// once: no accepted event was audited PROCESSED twice.
func (vr *verifier) once(ctx context.Context) error {
	rows, err := vr.cfg.Pool.Query(ctx, `SELECT event_id, count(*) FROM audit_log WHERE source = $1 AND action = 'PROCESSED' AND event_id = ANY($2) GROUP BY event_id HAVING count(*) > 1`, vr.cfg.Source, vr.ids)
	if err != nil {
		return err
	}
	var id string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		vr.v.Violations = append(vr.v.Violations, fmt.Sprintf("processed %d times: %s", n, id))
		return nil
	})
	return err
}

// rejected: no bad request made an event.
func (vr *verifier) rejected(ctx context.Context) error {
	rows, err := vr.cfg.Pool.Query(ctx, `SELECT event_id FROM events WHERE source = $1 AND event_id = ANY($2)`, vr.cfg.Source, vr.bad)
	if err != nil {
		return err
	}
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		vr.v.Violations = append(vr.v.Violations, "a rejected request was processed: "+id)
		return nil
	})
	return err
}

// order: each customer's PROCESSED records, in the order they were
// written, follow the customer's sequence numbers.
func (vr *verifier) order(ctx context.Context) error {
	rows, err := vr.cfg.Pool.Query(ctx, `SELECT event_id FROM audit_log WHERE source = $1 AND action = 'PROCESSED' AND event_id = ANY($2) ORDER BY seq`, vr.cfg.Source, vr.ids)
	if err != nil {
		return err
	}
	var id string
	last := map[string]int{}
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		s := vr.accepted[id]
		if prev, ok := last[s.Customer]; ok && s.Seq < prev {
			vr.v.Violations = append(vr.v.Violations, fmt.Sprintf("customer %s: %s (seq %d) processed after seq %d", s.Customer, id, s.Seq, prev))
		}
		last[s.Customer] = max(last[s.Customer], s.Seq)
		return nil
	})
	return err
}

// audit: topic and table hold the same records once the relay and the
// sink have caught up (waiting for them until the deadline).
func (vr *verifier) audit(ctx context.Context) error {
	cfg := vr.cfg
	for {
		rep, err := audit.Verify(ctx, audit.VerifyConfig{Pool: cfg.Pool, Brokers: cfg.Brokers, KafkaOpts: cfg.KafkaOpts,
			Topics: wire.Topics{Events: cfg.EventsTopic, Audit: cfg.AuditTopic}, Group: cfg.Group, Since: cfg.Since.Add(-time.Minute)})
		if err != nil {
			return err
		}
		vr.v.Audit = rep
		if (rep.OK() && rep.Pending == 0) || time.Now().After(vr.deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond): // polling for the relay and sink
		}
	}
	for _, a := range limit(vr.v.Audit.MissingFromTable, 10) {
		vr.v.Violations = append(vr.v.Violations, "audit record in the topic but not the table: "+a)
	}
	for _, a := range limit(vr.v.Audit.MissingFromTopic, 10) {
		vr.v.Violations = append(vr.v.Violations, "audit record in the table but not the topic: "+a)
	}
	return nil
}

func limit(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("… and %d more", len(s)-n))
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "not in events"
	}
	return s
}

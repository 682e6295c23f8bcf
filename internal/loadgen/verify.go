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
	v := &Verification{Violations: []string{}}
	accepted := map[string]Sent{}
	var bad []string
	for _, s := range sum.Sent {
		switch {
		case s.Status == 202 && s.Kind != "bad":
			accepted[s.EventID] = s
		case s.Kind == "bad":
			bad = append(bad, s.EventID)
			v.Rejected++
		}
	}
	v.Accepted = len(accepted)
	ids := make([]string, 0, len(accepted))
	for id := range accepted {
		ids = append(ids, id)
	}
	deadline := time.Now().Add(cfg.Wait)
	var notDone []string
	for {
		rows, err := cfg.Pool.Query(ctx, `SELECT event_id, status FROM events WHERE source = $1 AND event_id = ANY($2)`, cfg.Source, ids)
		if err != nil {
			return nil, err
		}
		status := map[string]string{}
		var id, st string
		if _, err := pgx.ForEachRow(rows, []any{&id, &st}, func() error { status[id] = st; return nil }); err != nil {
			return nil, err
		}
		notDone = notDone[:0]
		for _, id := range ids {
			if status[id] != "PROCESSED" {
				notDone = append(notDone, id+" ("+orNone(status[id])+")")
			}
		}
		v.Processed = len(ids) - len(notDone)
		if len(notDone) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond): // polling for the consumer to catch up
		}
	}
	sort.Strings(notDone)
	rows, err := cfg.Pool.Query(ctx, `SELECT (extract(epoch FROM processed_at - received_at) * 1e6)::bigint FROM events
WHERE source = $1 AND event_id = ANY($2) AND status = 'PROCESSED' AND received_at IS NOT NULL`, cfg.Source, ids)
	if err != nil {
		return nil, err
	}
	var us int64
	var e2e []time.Duration
	if _, err := pgx.ForEachRow(rows, []any{&us}, func() error { e2e = append(e2e, time.Duration(us)*time.Microsecond); return nil }); err != nil {
		return nil, err
	}
	v.EndToEndMs = percentiles(e2e)
	for _, s := range limit(notDone, 20) {
		v.Violations = append(v.Violations, "accepted but not PROCESSED: "+s)
	}

	rows, err = cfg.Pool.Query(ctx, `SELECT event_id, count(*) FROM audit_log WHERE source = $1 AND action = 'PROCESSED' AND event_id = ANY($2) GROUP BY event_id HAVING count(*) > 1`, cfg.Source, ids)
	if err != nil {
		return nil, err
	}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		v.Violations = append(v.Violations, fmt.Sprintf("processed %d times: %s", n, id))
		return nil
	}); err != nil {
		return nil, err
	}
	rows, err = cfg.Pool.Query(ctx, `SELECT event_id FROM events WHERE source = $1 AND event_id = ANY($2)`, cfg.Source, bad)
	if err != nil {
		return nil, err
	}
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		v.Violations = append(v.Violations, "a rejected request was processed: "+id)
		return nil
	}); err != nil {
		return nil, err
	}

	// Order: each customer's PROCESSED records, in the order they were
	// written, follow the customer's sequence numbers.
	rows, err = cfg.Pool.Query(ctx, `SELECT event_id FROM audit_log WHERE source = $1 AND action = 'PROCESSED' AND event_id = ANY($2) ORDER BY seq`, cfg.Source, ids)
	if err != nil {
		return nil, err
	}
	last := map[string]int{}
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		s := accepted[id]
		if prev, ok := last[s.Customer]; ok && s.Seq < prev {
			v.Violations = append(v.Violations, fmt.Sprintf("customer %s: %s (seq %d) processed after seq %d", s.Customer, id, s.Seq, prev))
		}
		last[s.Customer] = max(last[s.Customer], s.Seq)
		return nil
	}); err != nil {
		return nil, err
	}

	// The audit trail: topic and table hold the same records once the relay
	// and the sink have caught up.
	for {
		rep, err := audit.Verify(ctx, audit.VerifyConfig{Pool: cfg.Pool, Brokers: cfg.Brokers, KafkaOpts: cfg.KafkaOpts,
			Topics: wire.Topics{Events: cfg.EventsTopic, Audit: cfg.AuditTopic}, Group: cfg.Group, Since: cfg.Since.Add(-time.Minute)})
		if err != nil {
			return nil, err
		}
		v.Audit = rep
		if (rep.OK() && rep.Pending == 0) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond): // polling for the relay and sink
		}
	}
	for _, a := range limit(v.Audit.MissingFromTable, 10) {
		v.Violations = append(v.Violations, "audit record in the topic but not the table: "+a)
	}
	for _, a := range limit(v.Audit.MissingFromTopic, 10) {
		v.Violations = append(v.Violations, "audit record in the table but not the topic: "+a)
	}
	v.OK = len(v.Violations) == 0
	return v, nil
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

package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookstream/hookstream/internal/wire"
)

// The outcomes of a batch's events are written in one statement each:
// new rows inserted into the current bucket (retention), and rows left
// PROCESSING by an older version updated where they are. Any other
// existing row means someone else recorded the event after the snapshot,
// and the count tells: the transaction rolls back (errClaimRace) and runs
// again on a fresh snapshot. The transaction holds the bucket lock since
// before its snapshot, so an event it did not find can only have been
// written since into the current bucket, where the insert meets it.
const (
	processedSQL = `INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset,
  received_at, processed_at, bucket)
SELECT u.source, u.event_id, u.customer_id, u.event_type, 'PROCESSED', u.attempts, u.p, u.o, u.received_at, clock_timestamp(),
  (SELECT bucket FROM event_clock)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::bigint[], $8::timestamptz[])
  AS u(source, event_id, customer_id, event_type, attempts, p, o, received_at)
ORDER BY u.source, u.event_id
ON CONFLICT (source, event_id, bucket) DO NOTHING`
	processedStoredSQL = `UPDATE events e
SET status = 'PROCESSED', attempts = u.attempts, kafka_partition = u.p, kafka_offset = u.o, processed_at = clock_timestamp(),
    updated_at = now(), payload = NULL, headers = NULL, last_error = NULL
FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::bigint[]) AS u(source, event_id, attempts, p, o)
WHERE e.source = u.source AND e.event_id = u.event_id AND e.status = 'PROCESSING'`
)

// parkSQL stores events behind their customer's block, with what a later
// run needs (payload, headers); an event already stored, in any bucket,
// is left alone.
const parkSQL = `INSERT INTO events (source, event_id, customer_id, event_type, status, kafka_partition, kafka_offset, received_at, payload, headers, bucket)
SELECT u.source, u.event_id, u.customer_id, u.event_type, 'PARKED', u.p, u.o, u.received_at, u.payload, u.headers, (SELECT bucket FROM event_clock)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::timestamptz[], $8::bytea[], $9::jsonb[])
  AS u(source, event_id, customer_id, event_type, p, o, received_at, payload, headers)
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.source = u.source AND e.event_id = u.event_id)
ORDER BY u.source, u.event_id
ON CONFLICT (source, event_id, bucket) DO NOTHING`

// ensureBlockSQL gives parked events a block to drain them when their
// customer has none (it was resolved after the snapshot): every PARKED
// event has a block that will run it.
const ensureBlockSQL = `INSERT INTO customer_blocks (source, customer_id, state, kafka_partition, next_attempt_at)
SELECT DISTINCT u.source, u.customer_id, 'DRAINING', u.p, now()
FROM unnest($1::text[], $2::text[], $3::int[]) AS u(source, customer_id, p)
ORDER BY 1, 2
ON CONFLICT (source, customer_id) DO NOTHING`

var errClaimRace = errors.New("an event of the batch was recorded by someone else meanwhile")

// record writes the results of a batch (in lane order) and their audit
// records in tx, without committing. dups are events that came twice in
// the batch.
func (c *Consumer) record(ctx context.Context, tx pgx.Tx, res []result, dups []*Event) error {
	if err := c.writeDecisions(ctx, tx, c.decisions(res, dups)); err != nil {
		return err
	}
	var recs []*wire.AuditRecord
	var fresh, stored, waiting []*Event
	for _, r := range res {
		switch r.verdict {
		case processed:
			if r.stored {
				stored = append(stored, r.ev)
			} else {
				fresh = append(fresh, r.ev)
			}
			recs = append(recs, c.auditRecord(r.ev, wire.ActionProcessing, "", nil), c.auditRecord(r.ev, wire.ActionProcessed, "", nil))
		case duplicate:
			recs = append(recs, c.auditRecord(r.ev, wire.ActionDuplicate, "already_handled", nil))
		case parked:
			waiting = append(waiting, r.ev)
			recs = append(recs, c.auditRecord(r.ev, wire.ActionParked, "customer_blocked", nil))
		case failed:
			recs = append(recs, c.auditRecord(r.ev, wire.ActionProcessing, "", nil))
			frecs, err := c.writeFailure(ctx, tx, r.ev, r.f, time.Now())
			if err != nil {
				return err
			}
			recs = append(recs, frecs...)
		case redriven:
			rec, err := c.redrive(ctx, tx, r.ev)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
	}
	for _, ev := range dups {
		recs = append(recs, c.auditRecord(ev, wire.ActionDuplicate, "already_handled", nil))
	}
	if err := writeProcessed(ctx, tx, fresh, false); err != nil {
		return err
	}
	if err := writeProcessed(ctx, tx, stored, true); err != nil {
		return err
	}
	if err := writeParked(ctx, tx, waiting); err != nil {
		return err
	}
	return c.cfg.Audit.Write(ctx, tx, recs...)
}

// decisions are the receiver's records that travel with the batch's events
// (wire.HeaderAudit): written before the consumer's own, in the first
// transaction that records each event, once. A record without one comes
// from a receiver older than the header; one that does not read, or names
// another event, is counted and logged, and verify will report the event's
// decision missing.
func (c *Consumer) decisions(res []result, dups []*Event) []*wire.AuditRecord {
	var out []*wire.AuditRecord
	add := func(ev *Event) {
		v, ok := ev.Headers[wire.HeaderAudit]
		if !ok {
			return
		}
		rec, err := wire.AuditFromHeader([]byte(v))
		if err == nil && (rec.EventID != ev.EventID || rec.Source != ev.Source) {
			err = fmt.Errorf("the record is about %s/%s", rec.Source, rec.EventID)
		}
		if err != nil {
			badDecisions.Inc()
			c.logFor(ev).Warn("the receiver's decision travelling with an event is unreadable", "source", ev.Source, "event_id", ev.EventID, "error", err)
			return
		}
		p, o := ev.Partition, ev.Offset
		rec.Partition, rec.Offset = &p, &o
		out = append(out, rec)
	}
	for _, r := range res {
		add(r.ev)
	}
	for _, ev := range dups {
		add(ev)
	}
	return out
}

// writeDecisions writes the receivers' decisions, inside a savepoint. A
// decision dated where no partition of audit_log is (a receiver's clock
// far ahead, or a decision older than the audit retention: docs/design.md,
// "The audit log") would fail the batch, and every batch after it,
// forever; it is written instead at this consumer's time, with the
// receiver's in detail.receiver_at, and counted. Such a decision is no
// longer found by its (audit_id, at), so a later delivery of its event
// writes it again: a second row for a clock that is wrong, not a stall.
func (c *Consumer) writeDecisions(ctx context.Context, tx pgx.Tx, recs []*wire.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	err := savepoint(ctx, tx, func(sp pgx.Tx) error { return c.cfg.Audit.WriteIfAbsent(ctx, sp, recs...) })
	if !noPartition(err) {
		return err
	}
	now := time.Now().UTC()    // one time for them all: an event twice in the batch is one decision
	for _, rec := range recs { // rare: one at a time, to find which
		err := savepoint(ctx, tx, func(sp pgx.Tx) error { return c.cfg.Audit.WriteIfAbsent(ctx, sp, rec) })
		if !noPartition(err) {
			if err != nil {
				return err
			}
			continue
		}
		redated := *rec
		redated.Detail = maps.Clone(rec.Detail)
		if redated.Detail == nil {
			redated.Detail = map[string]any{}
		}
		redated.Detail[wire.DetailReceiverAt] = rec.At.Format(time.RFC3339Nano)
		redated.At = now
		redatedDecisions.Inc()
		c.cfg.Logger.Warn("a receiver's decision is dated where audit_log has no partition: written at the consumer's time",
			"source", rec.Source, "event_id", rec.EventID, "audit_id", rec.AuditID, "receiver_at", rec.At)
		if err := c.cfg.Audit.WriteIfAbsent(ctx, tx, &redated); err != nil {
			return err
		}
	}
	return nil
}

// savepoint runs f in a savepoint of tx, rolled back to if f fails.
func savepoint(ctx context.Context, tx pgx.Tx, f func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := f(sp); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

// noPartition reports whether err is PostgreSQL's "no partition of
// relation found for row" (SQLSTATE 23514, check_violation, which the
// audit_log's own CHECK on action shares: a decision of a newer
// version's action is redated in vain, and then fails as before).
func noPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514"
}

// writeProcessed records evs PROCESSED: inserted, or (stored) updated.
func writeProcessed(ctx context.Context, tx pgx.Tx, evs []*Event, stored bool) error {
	if len(evs) == 0 {
		return nil
	}
	n := len(evs)
	src, id, cus, typ := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	att, part, off, at := make([]int32, n), make([]int32, n), make([]int64, n), make([]*time.Time, n)
	for i, ev := range evs {
		src[i], id[i], cus[i], typ[i] = ev.Source, ev.EventID, ev.CustomerID, ev.EventType
		att[i], part[i], off[i], at[i] = int32(ev.Attempt), ev.Partition, ev.Offset, nullTime(ev.ReceivedAt)
	}
	query, args := processedSQL, []any{src, id, cus, typ, att, part, off, at}
	if stored {
		query, args = processedStoredSQL, []any{src, id, att, part, off}
	}
	tag, err := tx.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(n) {
		return errClaimRace
	}
	return nil
}

func writeParked(ctx context.Context, tx pgx.Tx, evs []*Event) error {
	if len(evs) == 0 {
		return nil
	}
	n := len(evs)
	src, id, cus, typ := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	part, off, at := make([]int32, n), make([]int64, n), make([]*time.Time, n)
	payload, headers := make([][]byte, n), make([][]byte, n)
	for i, ev := range evs {
		h, err := json.Marshal(ev.Headers)
		if err != nil {
			return err
		}
		src[i], id[i], cus[i], typ[i] = ev.Source, ev.EventID, ev.CustomerID, ev.EventType
		part[i], off[i], at[i], payload[i], headers[i] = ev.Partition, ev.Offset, nullTime(ev.ReceivedAt), ev.Body, h
	}
	if _, err := tx.Exec(ctx, parkSQL, src, id, cus, typ, part, off, at, payload, headers); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, ensureBlockSQL, src, cus, part)
	return err
}

// counted reports a committed batch's outcomes in the metrics and logs.
func (c *Consumer) counted(res []result, dups []*Event, took time.Duration) {
	for _, r := range res {
		switch r.verdict {
		case processed:
			outcomesTotal.WithLabelValues(r.ev.Source, "processed").Inc()
			processingSeconds.WithLabelValues(r.ev.Source).Observe(took.Seconds())
			if !r.ev.ReceivedAt.IsZero() {
				endToEndSeconds.WithLabelValues(r.ev.Source).Observe(time.Since(r.ev.ReceivedAt).Seconds())
			}
		case duplicate:
			outcomesTotal.WithLabelValues(r.ev.Source, "duplicate").Inc()
		case parked, redriven:
			outcomesTotal.WithLabelValues(r.ev.Source, "parked").Inc()
		case failed:
			c.logFailure(r.ev, r.f)
		}
	}
	for _, ev := range dups {
		outcomesTotal.WithLabelValues(ev.Source, "duplicate").Inc()
	}
}

package consumer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/wire"
)

// A partition's batch is processed as lanes, one per customer with its
// events in offset order. Lanes are spread over up to Concurrency groups
// (fewer when the handlers are fast: see groupsFor);
// each group runs in one transaction: one statement claims every event of
// the group, the handlers run one after the other (each customer in order),
// each in a savepoint of its own taken only if it touches the database, and
// one statement marks the processed events, one writes the audit rows, one
// commit makes it all durable. What does not fit that path — a parked
// customer, a re-driven event, whatever follows a failure in its lane —
// continues one event per transaction (Consumer.processEvent) once the
// group's transaction has committed, so order holds.

// lane is one customer's events of a batch, in offset order.
type lane struct {
	customer string
	events   []*Event
	// delay before events[0] may be attempted again: its attempt in the
	// group transaction failed and scheduled a retry.
	delay time.Duration
}

type eventKey struct{ source, id string }

// lanesOf groups a batch by customer, keeping offset order, and skips what
// lies behind the stored position.
func (w *worker) lanesOf(recs []*kgo.Record) []*lane {
	byCustomer := map[string]*lane{}
	var lanes []*lane
	for _, r := range recs {
		if r.Offset < w.next {
			continue // already behind the stored position (a refetch)
		}
		ev, err := eventOf(r)
		if err != nil {
			w.c.log.Error("record without hookstream metadata; skipped", "partition", r.Partition, "offset", r.Offset, "error", err)
			continue
		}
		l := byCustomer[ev.CustomerID]
		if l == nil {
			l = &lane{customer: ev.CustomerID}
			byCustomer[ev.CustomerID] = l
			lanes = append(lanes, l)
		}
		l.events = append(l.events, ev)
	}
	return lanes
}

// processBatch runs a batch's lanes in up to Concurrency groups at once. It
// reports whether every event reached a durable outcome (false: the
// partition was revoked or the consumer is stopping).
func (w *worker) processBatch(recs []*kgo.Record) (ok, stored bool) {
	lanes := w.lanesOf(recs)
	if len(lanes) == 0 {
		return w.ctx.Err() == nil, false
	}
	events := 0
	for _, l := range lanes {
		events += len(l.events)
	}
	groups := make([][]*lane, w.c.groupsFor(events, len(lanes)))
	for i, l := range lanes {
		groups[i%len(groups)] = append(groups[i%len(groups)], l)
	}
	if len(groups) == 1 {
		// One transaction may finish the whole batch: then it also
		// stores the partition's position, and effects and position move
		// together.
		pos := &position{partition: w.partition, next: recs[len(recs)-1].Offset + 1}
		if !w.c.runGroup(w.ctx, groups[0], pos) {
			return false, false
		}
		return w.ctx.Err() == nil, pos.stored
	}
	var wg sync.WaitGroup
	var abandoned atomic.Bool
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !w.c.runGroup(w.ctx, g, nil) {
				abandoned.Store(true)
			}
		}()
	}
	wg.Wait()
	return !abandoned.Load() && w.ctx.Err() == nil, false
}

// position is a partition's next offset, for the transaction that
// finishes its batch to store.
type position struct {
	partition int32
	next      int64
	stored    bool
}

func (p *position) markStored(ok bool) {
	if p != nil && ok {
		p.stored = true
	}
}

const storePositionSQL = `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()`

// groupWork is the handler time a group of a batch should hold, about: a
// batch is spread over as many groups as its handlers need for that, up to
// Concurrency. Fast handlers (the no-op, a local write) share one
// transaction; slow ones (an HTTP destination) run side by side.
const groupWork = 25 * time.Millisecond

// groupsFor is how many groups a batch of events across lanes customers
// gets, from the handlers' recent average time.
func (c *Consumer) groupsFor(events, lanes int) int {
	need := int(time.Duration(events)*time.Duration(c.handlerAvg.Load())/groupWork) + 1
	return max(1, min(need, c.cfg.Concurrency, lanes))
}

// observeHandler folds one handler call into the running average (weight
// 1/16).
func (c *Consumer) observeHandler(d time.Duration) {
	for {
		old := c.handlerAvg.Load()
		if c.handlerAvg.CompareAndSwap(old, old+(int64(d)-old)/16) {
			return
		}
	}
}

// maxGroupEvents bounds the events one group transaction takes (its look-up
// and its statements), so that a consumer far behind works through its
// backlog in transactions of a steady size.
const maxGroupEvents = 1000

// runGroup drives a group of lanes to durable outcomes: the group
// transaction first (repeated while PostgreSQL or the broker fails us),
// then what it left, one event at a time, each lane in order.
func (c *Consumer) runGroup(ctx context.Context, lanes []*lane, pos *position) bool {
	var rest []*lane
	for infra := 0; len(lanes) > 0; {
		if len(rest) > 0 {
			pos = nil // events are left for afterwards: the position waits for them
		}
		r, more, err := c.groupAttempt(ctx, lanes, pos)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			pausesTotal.Inc()
			c.log.Warn("processing paused", "customers", len(lanes), "error", err)
			if !backoff.Sleep(ctx, backoff.Delay(infra, 100*time.Millisecond, 5*time.Second)) {
				return false
			}
			infra++
			continue
		}
		infra = 0
		rest, lanes = append(rest, r...), more
	}
	var wg sync.WaitGroup
	var abandoned atomic.Bool
	for _, l := range rest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !backoff.Sleep(ctx, l.delay) {
				abandoned.Store(true)
				return
			}
			for _, ev := range l.events {
				if !c.processEvent(ctx, ev) {
					abandoned.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return !abandoned.Load()
}

// groupLockSQL reads the state of a group's events that exist and locks
// them. Each key is looked up on its own (the locking subquery is never
// turned into a join, so no plan — generic or for a big batch — scans the
// table), in the order given: callers pass the keys sorted, so two groups
// holding the same events (a partition briefly owned twice during a
// rebalance) wait for each other instead of deadlocking. A claimable row
// cannot change until the outcome is written.
const groupLockSQL = `SELECT e.source, e.event_id, e.status, e.attempts, e.created_at
FROM unnest($1::text[], $2::text[]) AS u(source, event_id)
CROSS JOIN LATERAL (
  SELECT source, event_id, status, attempts, created_at FROM events
  WHERE source = u.source AND event_id = u.event_id
  FOR UPDATE
) e`

// groupProcessedSQL writes the PROCESSED outcome of a group's events in
// one statement: new rows inserted as PROCESSED, existing (FAILED, or left
// PROCESSING by a crashed owner) updated. An event another consumer
// inserted meanwhile is neither, and the count tells: the transaction
// must then roll back (errClaimRace) and the group runs again.
const groupProcessedSQL = `INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset, received_at, processed_at)
SELECT u.source, u.event_id, u.customer_id, u.event_type, 'PROCESSED', u.attempts, u.p, u.o, u.received_at, clock_timestamp()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::bigint[], $8::timestamptz[])
  AS u(source, event_id, customer_id, event_type, attempts, p, o, received_at)
ORDER BY u.source, u.event_id
ON CONFLICT (source, event_id) DO UPDATE
SET status = 'PROCESSED', attempts = excluded.attempts, kafka_partition = excluded.kafka_partition,
    kafka_offset = excluded.kafka_offset, processed_at = clock_timestamp(), updated_at = now(),
    payload = NULL, headers = NULL, last_error = NULL
WHERE events.status IN ('PROCESSING', 'FAILED')`

// groupClaimOneSQL gives a failing event of a group its row, so that the
// failure can be recorded on it (the same race check as above).
const groupClaimOneSQL = `INSERT INTO events (source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset, received_at)
VALUES ($1, $2, $3, $4, 'PROCESSING', $5, $6, $7, $8)
ON CONFLICT (source, event_id) DO UPDATE
SET status = 'PROCESSING', attempts = excluded.attempts, kafka_partition = excluded.kafka_partition,
    kafka_offset = excluded.kafka_offset, updated_at = now()
WHERE events.status IN ('PROCESSING', 'FAILED')`

// errClaimRace: another consumer wrote one of the group's new events
// while the group ran. Nothing commits; the next run sees its outcome.
var errClaimRace = errors.New("an event of the group was claimed by another consumer meanwhile")

type known struct {
	status    string
	attempts  int
	createdAt time.Time
}

// groupAttempt runs one group transaction. It returns the lanes (or lane
// tails) left for one-by-one processing, and those it did not reach within
// CommitInterval, for the next group transaction. A non-nil error means
// nothing committed.
func (c *Consumer) groupAttempt(ctx context.Context, lanes []*lane, pos *position) (rest, more []*lane, err error) {
	start := time.Now()
	tx, err := c.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit

	customers := make([]string, len(lanes))
	for i, l := range lanes {
		customers[i] = l.customer
	}
	slices.Sort(customers)
	rows, err := tx.Query(ctx, `SELECT customer_id FROM parked_customers WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE`, customers)
	if err != nil {
		return nil, nil, err
	}
	parked := map[string]bool{}
	var cust string
	if _, err := pgx.ForEachRow(rows, []any{&cust}, func() error { parked[cust] = true; return nil }); err != nil {
		return nil, nil, err
	}

	// What the group takes: each unparked lane up to its first re-driven
	// event, and no more than maxGroupEvents in all; what is over goes to
	// the next transaction.
	fast := make([][]*Event, len(lanes))
	capped := make([]bool, len(lanes)) // the lane's tail waits for the next transaction
	var keys []eventKey
	for i, l := range lanes {
		if parked[l.customer] {
			rest = append(rest, l)
			continue
		}
		cut := slices.IndexFunc(l.events, func(ev *Event) bool { return ev.Redrive || ev.fromParked })
		if cut < 0 {
			cut = len(l.events)
		}
		if room := maxGroupEvents - len(keys); cut > room {
			cut, capped[i] = max(room, 0), true
		}
		fast[i] = l.events[:cut]
		for _, ev := range fast[i] {
			keys = append(keys, eventKey{ev.Source, ev.EventID})
		}
	}
	state := map[eventKey]known{}
	if len(keys) > 0 {
		slices.SortFunc(keys, func(a, b eventKey) int {
			if c := strings.Compare(a.source, b.source); c != 0 {
				return c
			}
			return strings.Compare(a.id, b.id)
		})
		sources, ids := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			sources[i], ids[i] = k.source, k.id
		}
		rows, err := tx.Query(ctx, groupLockSQL, sources, ids)
		if err != nil {
			return nil, nil, err
		}
		var k eventKey
		var st known
		if _, err := pgx.ForEachRow(rows, []any{&k.source, &k.id, &st.status, &st.attempts, &st.createdAt}, func() error {
			state[k] = st
			return nil
		}); err != nil {
			return nil, nil, err
		}
	}
	taken := map[eventKey]bool{} // run in this transaction (an event can be in a batch twice)
	var handled time.Duration    // handler time gathered in this transaction

	var recs []*wire.AuditRecord
	var processed, duplicates []*Event
	type failed struct {
		ev *Event
		f  failure
	}
	var failures []failed
	for i, l := range lanes {
		if parked[l.customer] {
			continue // left whole, above
		}
		tail, delay, later := l.events[len(fast[i]):], time.Duration(0), capped[i]
		for j, ev := range fast[i] {
			if handled > c.cfg.CommitInterval {
				// Enough uncommitted handler work: commit, and go on
				// from here in the next transaction.
				tail, later = l.events[j:], true
				break
			}
			k := eventKey{ev.Source, ev.EventID}
			st, exists := state[k]
			if taken[k] || exists && st.status != "PROCESSING" && st.status != "FAILED" {
				// Already PROCESSED (a redelivery or a duplicate
				// produce), DEAD or PARKED, or earlier in this batch.
				recs = append(recs, c.auditRecord(ev, wire.ActionDuplicate, "already_handled", nil))
				duplicates = append(duplicates, ev)
				continue
			}
			taken[k] = true
			ev.Attempt = st.attempts + 1
			if ev.firstAttempt.IsZero() {
				ev.firstAttempt = st.createdAt
				if !exists {
					ev.firstAttempt = time.Now()
				}
			}
			processing := c.auditRecord(ev, wire.ActionProcessing, "", nil)
			sp := &lazySavepoint{ctx: ctx, parent: tx}
			hstart := time.Now()
			herr := c.cfg.Handler.Handle(ctx, sp, ev)
			took := time.Since(hstart)
			handled += took
			c.observeHandler(took)
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if err := sp.finish(ctx, herr == nil); err != nil {
				return nil, nil, err
			}
			if herr == nil {
				processed = append(processed, ev)
				recs = append(recs, processing, c.auditRecord(ev, wire.ActionProcessed, "", nil))
				continue
			}
			// Keep the audit rows in order: what came before the
			// failure is written before it.
			if err := c.cfg.Audit.Write(ctx, tx, recs...); err != nil {
				return nil, nil, err
			}
			recs = recs[:0]
			var at *time.Time
			if !ev.ReceivedAt.IsZero() {
				at = &ev.ReceivedAt
			}
			tag, err := tx.Exec(ctx, groupClaimOneSQL, ev.Source, ev.EventID, ev.CustomerID, ev.EventType, ev.Attempt, ev.Partition, ev.Offset, at)
			if err != nil {
				return nil, nil, err
			}
			if tag.RowsAffected() != 1 {
				return nil, nil, errClaimRace
			}
			f, err := c.recordFailure(ctx, tx, ev, c.cfg.Retry(ev.Source).withDefaults(), herr, processing)
			if err != nil {
				return nil, nil, err
			}
			failures = append(failures, failed{ev, f})
			tail, delay, later = l.events[j:], f.delay, false
			if f.dead {
				tail, delay = l.events[j+1:], 0 // they will find the customer parked
			}
			break
		}
		switch {
		case later:
			more = append(more, &lane{customer: l.customer, events: tail})
		case len(tail) > 0:
			rest = append(rest, &lane{customer: l.customer, events: tail, delay: delay})
		}
	}
	if len(processed) > 0 {
		n := len(processed)
		src, id, cus, typ := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		att, part, off, at := make([]int32, n), make([]int32, n), make([]int64, n), make([]*time.Time, n)
		for i, ev := range processed {
			src[i], id[i], cus[i], typ[i] = ev.Source, ev.EventID, ev.CustomerID, ev.EventType
			att[i], part[i], off[i] = int32(ev.Attempt), ev.Partition, ev.Offset
			if !ev.ReceivedAt.IsZero() {
				at[i] = &ev.ReceivedAt
			}
		}
		tag, err := tx.Exec(ctx, groupProcessedSQL, src, id, cus, typ, att, part, off, at)
		if err != nil {
			return nil, nil, err
		}
		if tag.RowsAffected() != int64(n) {
			return nil, nil, errClaimRace
		}
	}
	if err := c.cfg.Audit.Write(ctx, tx, recs...); err != nil {
		return nil, nil, err
	}
	finishes := pos != nil && len(rest) == 0 && len(more) == 0
	if finishes {
		if _, err := tx.Exec(ctx, storePositionSQL, c.cfg.Group, c.cfg.Topics.Events, pos.partition, pos.next); err != nil {
			return nil, nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, err
	}
	pos.markStored(finishes)
	took := time.Since(start).Seconds()
	for _, ev := range processed {
		outcomesTotal.WithLabelValues(ev.Source, "processed").Inc()
		processingSeconds.WithLabelValues(ev.Source).Observe(took)
		if !ev.ReceivedAt.IsZero() {
			endToEndSeconds.WithLabelValues(ev.Source).Observe(time.Since(ev.ReceivedAt).Seconds())
		}
	}
	for _, ev := range duplicates {
		outcomesTotal.WithLabelValues(ev.Source, "duplicate").Inc()
	}
	for _, fl := range failures {
		name := "failed"
		if fl.f.dead {
			name = "dead"
		}
		outcomesTotal.WithLabelValues(fl.ev.Source, name).Inc()
		c.logFailure(fl.ev, fl.f)
	}
	return rest, more, nil
}

package consumer

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// A partition's batch is processed as lanes, one per (source, customer)
// with its events in offset order. Before any handler runs, a snapshot
// says which customers are blocked (customer_blocks) and what is already
// known of each event (events); the lane's events are then decided in
// order (run.go) and their outcomes written in one transaction (record.go).

// lane is one (source, customer)'s events of a batch, in offset order.
type lane struct {
	key    customerKey
	events []*Event
}

type customerKey struct{ source, customer string }

type eventKey struct{ source, id string }

func keyOf(ev *Event) eventKey { return eventKey{ev.Source, ev.EventID} }

// lanesOf groups a batch by (source, customer), keeping offset order. It
// skips what lies behind the stored position (a refetch) and returns
// apart the events whose (source, event_id) came earlier in the batch: one
// statement cannot write a row twice, and they are duplicates anyway.
func lanesOf(evs []*Event, next int64) (lanes []*lane, dups []*Event) {
	byCustomer := map[customerKey]*lane{}
	seen := map[eventKey]bool{}
	for _, ev := range evs {
		if ev.Offset < next {
			continue
		}
		if seen[keyOf(ev)] {
			dups = append(dups, ev)
			continue
		}
		seen[keyOf(ev)] = true
		k := customerKey{ev.Source, ev.CustomerID}
		l := byCustomer[k]
		if l == nil {
			l = &lane{key: k}
			byCustomer[k] = l
			lanes = append(lanes, l)
		}
		l.events = append(l.events, ev)
	}
	return lanes, dups
}

// known is what the events table holds of an event.
type known struct {
	status   string
	attempts int
}

// snapshot is the state a batch's lanes are decided on.
type snapshot struct {
	blocked map[customerKey]string // the block's state
	events  map[eventKey]known
}

// queryer is a pgx.Tx or the pool.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Each key is looked up on its own (the subquery is never turned into a
// join, so no plan scans a table), in the order given: callers pass keys
// sorted, so two transactions locking the same rows wait for each other
// instead of deadlocking. Blocks are locked before events, everywhere. An
// event is looked up only in the buckets from its floor on (Event.floor):
// the partitions below are pruned at run time, per key.
const (
	blocksSQL = `SELECT b.source, b.customer_id, b.state
FROM unnest($1::text[], $2::text[]) AS u(source, customer_id)
CROSS JOIN LATERAL (SELECT source, customer_id, state FROM customer_blocks
  WHERE source = u.source AND customer_id = u.customer_id %s) b`
	eventsSQL = `SELECT e.source, e.event_id, e.status, e.attempts
FROM unnest($1::text[], $2::text[], $3::int[]) AS u(source, event_id, floor)
CROSS JOIN LATERAL (SELECT source, event_id, status, attempts FROM events
  WHERE source = u.source AND event_id = u.event_id AND bucket >= u.floor %s) e`
)

var (
	blocksLockSQL = sprintfSQL(blocksSQL, "FOR UPDATE")
	blocksReadSQL = sprintfSQL(blocksSQL, "")
	eventsLockSQL = sprintfSQL(eventsSQL, "FOR UPDATE")
	eventsReadSQL = sprintfSQL(eventsSQL, "")
)

// lookup reads the snapshot of lanes through q; lock takes row locks that
// hold until q (a transaction) ends.
func lookup(ctx context.Context, q queryer, lanes []*lane, lock bool) (*snapshot, error) {
	snap := &snapshot{blocked: map[customerKey]string{}, events: map[eventKey]known{}}
	custs := make([]customerKey, len(lanes))
	var evs []*Event
	for i, l := range lanes {
		custs[i] = l.key
		evs = append(evs, l.events...)
	}
	slices.SortFunc(custs, func(a, b customerKey) int {
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.customer, b.customer))
	})
	slices.SortFunc(evs, func(a, b *Event) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.EventID, b.EventID))
	})
	bq, eq := blocksReadSQL, eventsReadSQL
	if lock {
		bq, eq = blocksLockSQL, eventsLockSQL
	}
	srcs, ids := split(custs, func(k customerKey) (string, string) { return k.source, k.customer })
	rows, err := q.Query(ctx, bq, srcs, ids)
	if err != nil {
		return nil, err
	}
	var ck customerKey
	var state string
	if _, err := pgx.ForEachRow(rows, []any{&ck.source, &ck.customer, &state}, func() error { snap.blocked[ck] = state; return nil }); err != nil {
		return nil, err
	}
	srcs, ids = split(evs, func(ev *Event) (string, string) { return ev.Source, ev.EventID })
	floors := make([]int32, len(evs))
	for i, ev := range evs {
		floors[i] = ev.floor
	}
	rows, err = q.Query(ctx, eq, srcs, ids, floors)
	if err != nil {
		return nil, err
	}
	var ek eventKey
	var kn known
	_, err = pgx.ForEachRow(rows, []any{&ek.source, &ek.id, &kn.status, &kn.attempts}, func() error { snap.events[ek] = kn; return nil })
	return snap, err
}

func split[K any](keys []K, f func(K) (string, string)) (a, b []string) {
	a, b = make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		a[i], b[i] = f(k)
	}
	return a, b
}

// groupWork is the handler time a group of a batch should hold, about: a
// batch is spread over as many groups as its handlers need for that, up to
// Concurrency. Fast handlers (the no-op, a local write) share one
// transaction; slow ones run side by side.
const groupWork = 25 * time.Millisecond

// groupsFor is how many groups a batch of events across lanes customers
// gets, from the handlers' recent average time.
func (c *Consumer) groupsFor(events, lanes int) int {
	need := int(time.Duration(events)*time.Duration(c.handlerAvg.Load())/groupWork) + 1
	return max(1, min(need, c.cfg.Concurrency, lanes))
}

func sprintfSQL(format, lock string) string { return fmt.Sprintf(format, lock) }

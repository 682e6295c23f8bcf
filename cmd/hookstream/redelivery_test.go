package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// What the contract lets a destination receive again (docs/design.md,
// "Processing" and "Fencing"): a destination is called outside any
// transaction and the outcome recorded after, so an event is delivered
// again, in order and with the same Idempotency-Key, when its call was
// made and its outcome not recorded: the member crashed, was fenced (lost
// its partition without knowing it), had its partition revoked (its
// batch's calls canceled and its transaction rolled back, consumer/gather.go),
// or the recording transaction failed. Besides these, an operator's
// replay or a provider's re-send of a FAILED or DEAD event (a re-drive)
// delivers it again. Nothing else may: an event whose outcome was
// recorded is never called again.
//
// The verifier cannot see a recording, so it asks for the cause instead:
// a call of an event the destination had already answered for good (2xx,
// or a 4xx other than 408 and 429, which makes it DEAD at once) is a
// violation unless, between that answer and the call, a fault that can
// cause re-delivery was in effect (its span met the interval) or the event
// was replayed or re-driven.

// faultSpan is a stretch of time in which a fault may have kept a call's
// outcome from being recorded, or made a member deliver again what was
// not recorded: from the fault's start until its end plus a margin for
// the consumer to notice and recover (redeliveryMargin).
type faultSpan struct {
	what     string
	from, to time.Time
}

// redeliveryCauses is what may explain a repeated call: the faults'
// spans, and when each event was replayed by an operator (REPLAYED) or
// re-driven by a provider's re-send (RETRY_ACCEPTED).
type redeliveryCauses struct {
	spans    []faultSpan
	redrives map[string][]time.Time
	origin   time.Time // times are reported as offsets from it (the load's start), when set
}

// redeliveryMargin is how long after a fault ends it may still make a
// member deliver again what it had delivered before: the group evicts a
// dead or stopped member after its session timeout (6 s, as the schedule
// starts members), the others hear of the rebalance at their next
// heartbeat (3 s, franz-go's default), a successor's take of the
// partition waits for the transaction a stopped member holds open until
// PostgreSQL ends it (idle_in_transaction_session_timeout, 15 s), and a
// member fenced while still assigned takes its partition back after
// consumer.RetakeDelay (5 s) and delivers again from the stored
// position; a second for the batch that follows.
const redeliveryMargin = 6*time.Second + 3*time.Second + 15*time.Second + 5*time.Second + time.Second

// redeliveryFault says whether a fault of the schedule can make the
// consumer deliver again an event the destination accepted, and if so
// why (the kinds are in schedule_test.go):
//
//   - member-kill: a crash between a call and its recording; the next
//     owner delivers again from the stored position ("Processing").
//   - member-stop: SIGSTOP past the session timeout; the group moves the
//     partitions, the stopped member is fenced, and its successor delivers
//     again what it had not recorded; resumed, it may finish the call it
//     had begun and retake a partition still assigned to it ("Fencing").
//   - member-add: the fourth member's join and its leave (SIGTERM) are
//     rebalances; a revoked partition's batch has its calls canceled and
//     its transaction rolled back, and the same batch's other partitions
//     run again: their events are delivered again (consumer/gather.go,
//     runJobs; Consumer.Run abandons unfinished work on SIGTERM).
//   - broker-kill, leader-kill: the killed node may be the group's
//     coordinator; a member whose heartbeats fail loses its session
//     (franz-go calls OnPartitionsLost, which cancels the batch as a
//     revocation does) and rejoins, or is evicted after its session
//     timeout and its partitions move; and a dead letter is produced
//     inside the batch's transaction (consumer/failure.go), so a produce
//     that fails while leadership moves rolls the whole batch back, to be
//     delivered again.
//   - postgres-restart: every recording transaction open at the crash
//     fails after its calls were made; the batch runs again.
//
// And those that cannot:
//
//   - receiver-kill: the receiver delivers nothing and records no
//     outcome; a request cut off is re-sent by the provider, which is a
//     duplicate the consumer absorbs (or a re-drive, seen as such).
//   - destination-outage: a 503 is not an acceptance; the retry that
//     follows is the event's first acceptance.
//   - replay, unpark: explained event by event by their audit records
//     (REPLAYED), not by a span of time.
func redeliveryFault(kind string) bool {
	switch kind {
	case faultMemberKill, faultMemberStop, faultMemberAdd, faultBrokerKill, faultLeaderKill, faultPostgres:
		return true
	}
	return false
}

// finalAnswer says whether the destination's answer settles the event for
// good: success, or a permanent failure (the event goes DEAD at once).
func finalAnswer(status int) bool {
	return status/100 == 2 || status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// explains returns what explains a call at b of event id answered for
// good at a: a fault whose span meets [a, b], or a re-drive of the event
// in it; "" when nothing does.
func (rc redeliveryCauses) explains(id string, a, b time.Time) string {
	for _, t := range rc.redrives[id] {
		if !t.Before(a) && !t.After(b) {
			return "replayed or re-driven"
		}
	}
	for _, s := range rc.spans {
		if !s.from.After(b) && !s.to.Before(a) {
			return fmt.Sprintf("%s (%s to %s)", s.what, rc.when(s.from), rc.when(s.to))
		}
	}
	return ""
}

// describeRepeats counts the calls of events already answered for good,
// by what explained each (the first cause found), for the log: it shows
// how much of the rule a run exercised.
func describeRepeats(calls []faultCall, causes redeliveryCauses) string {
	answered := map[string]time.Time{}
	by := map[string]int{}
	n := 0
	for _, c := range calls {
		if a, ok := answered[c.eventID]; ok {
			n++
			why := causes.explains(c.eventID, a, c.at)
			if why == "" {
				why = "nothing (a violation)"
			}
			by[why]++
		}
		if finalAnswer(c.status) {
			answered[c.eventID] = c.at
		}
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls of events already answered for good", n)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n\t%d explained by %s", by[k], k)
	}
	return b.String()
}

func (rc redeliveryCauses) when(t time.Time) string {
	if rc.origin.IsZero() {
		return t.Format("15:04:05.000")
	}
	return fmt.Sprintf("+%.1fs", t.Sub(rc.origin).Seconds())
}

// deliveryViolations checks the destination's record.
//
//   - Each call carries the event's id as its Idempotency-Key.
//   - First deliveries in order: a customer's event is delivered for the
//     first time (or retried, until accepted) only once every earlier
//     event of the customer was accepted, or refused for good and skipped
//     (dead): none comes before its predecessors succeeded.
//   - Repeats only with a cause: an event the destination already answered
//     for good is called again only when a fault that can cause
//     re-delivery was in effect between that answer and the call, or the
//     event was replayed or re-driven in between (causes.explains).
//   - Repeats in order: each process (incarnation) delivers a customer's
//     events in sequence order; it goes back to an earlier event only to
//     deliver again a suffix, which needs a cause between its previous
//     call of the customer and this one. Different processes may
//     interleave: a fenced member can still be finishing a call while its
//     successor delivers the same customer ("Fencing").
func deliveryViolations(calls []faultCall, dead func(string, int) bool, causes redeliveryCauses) []string {
	var out []string
	accepted := map[string]map[int]bool{}
	refused := map[string]map[int]bool{}
	answered := map[string]faultCall{} // each event's latest call answered for good
	type stream struct{ member, customer string }
	prev := map[stream]faultCall{}
	for i, c := range calls {
		if c.key != c.eventID || c.eventID != faultEvent(c.customer, c.seq) {
			out = append(out, fmt.Sprintf("call %d by %s: Idempotency-Key %q for event %q (customer %s, seq %d)", i, c.member, c.key, c.eventID, c.customer, c.seq))
			continue
		}
		if accepted[c.customer] == nil {
			accepted[c.customer], refused[c.customer] = map[int]bool{}, map[int]bool{}
		}
		if !accepted[c.customer][c.seq] {
			for j := range c.seq {
				if !accepted[c.customer][j] && !(dead(c.customer, j) && refused[c.customer][j]) {
					out = append(out, fmt.Sprintf("call %d by %s: %s delivered before %s was accepted", i, c.member, c.eventID, faultEvent(c.customer, j)))
					break
				}
			}
		}
		if a, ok := answered[c.eventID]; ok && causes.explains(c.eventID, a.at, c.at) == "" {
			out = append(out, fmt.Sprintf("call %d by %s at %s (answered %d): %s delivered again, after %s answered it %d at %s, with no fault that can cause re-delivery, nor a replay, in between",
				i, c.member, causes.when(c.at), c.status, c.eventID, a.member, a.status, causes.when(a.at)))
		}
		s := stream{c.member, c.customer}
		if p, ok := prev[s]; ok && c.seq < p.seq && causes.explains(c.eventID, p.at, c.at) == "" {
			out = append(out, fmt.Sprintf("call %d by %s at %s: %s after its call of %s at %s, out of order with no fault that can cause re-delivery, nor a replay, in between",
				i, c.member, causes.when(c.at), c.eventID, p.eventID, causes.when(p.at)))
		}
		prev[s] = c
		switch {
		case c.status/100 == 2:
			accepted[c.customer][c.seq] = true
		case c.status == http.StatusUnprocessableEntity:
			refused[c.customer][c.seq] = true
		}
		if finalAnswer(c.status) {
			answered[c.eventID] = c
		}
	}
	return out
}

// loadRedrives reads from audit_log when each event of source was
// replayed by an operator (REPLAYED: the admin API, `hookstream replay`,
// an unpark's replay of the blocker) or re-driven by a provider's re-send
// of a FAILED or DEAD event (RETRY_ACCEPTED).
func loadRedrives(ctx context.Context, pool *pgxpool.Pool, source string) (map[string][]time.Time, error) {
	rows, err := pool.Query(ctx, `SELECT event_id, at FROM audit_log
WHERE source = $1 AND event_id IS NOT NULL AND action IN ('REPLAYED', 'RETRY_ACCEPTED')`, source)
	if err != nil {
		return nil, err
	}
	out := map[string][]time.Time{}
	var id string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error { out[id] = append(out[id], at); return nil })
	return out, err
}

// describeSpans lists the spans, one a line.
func (rc redeliveryCauses) describeSpans() string {
	var b strings.Builder
	for _, s := range rc.spans {
		fmt.Fprintf(&b, "\n\t%s to %s %s", rc.when(s.from), rc.when(s.to), s.what)
	}
	return b.String()
}

// TestDeliveryViolationsRepeats checks the rule on repeats: an event the
// destination accepted may be delivered again only when a fault that can
// cause re-delivery, or a replay of the event, came between its acceptance
// and the repeat; and a process's repeats of a customer go in order.
func TestDeliveryViolationsRepeats(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	call := func(member string, seq int, s float64, status int) faultCall {
		id := faultEvent("cus001", seq)
		return faultCall{member: member, customer: "cus001", seq: seq, eventID: id, key: id, status: status, at: at(s)}
	}
	none := func(string, int) bool { return false }
	kill := faultSpan{what: "member-kill a", from: at(10), to: at(12).Add(redeliveryMargin)}
	first := []faultCall{call("a1", 0, 1, 204), call("a1", 1, 2, 204), call("a1", 2, 9, 204)}
	cases := []struct {
		name   string
		calls  []faultCall
		causes redeliveryCauses
		want   string // in the one violation; "" for none
	}{
		{"no repeat", first, redeliveryCauses{}, ""},
		{"a repeat with no fault", append(first[:3:3], call("b1", 2, 20, 204)), redeliveryCauses{}, "cus001-2 delivered again"},
		{"a repeat with a fault long before the acceptance",
			append(first[:3:3], call("b1", 2, 80, 204)), redeliveryCauses{spans: []faultSpan{{what: "postgres-restart", from: at(0), to: at(0.5)}}}, "delivered again"},
		{"a repeat in a fault's span", append(first[:3:3], call("b1", 2, 20, 204)), redeliveryCauses{spans: []faultSpan{kill}}, ""},
		{"a repeat long after a fault that came between", append(first[:3:3], call("b1", 2, 300, 503), call("b1", 2, 301, 204)),
			redeliveryCauses{spans: []faultSpan{kill}}, ""},
		// The fault explains the repeat accepted at 50, not a call after that.
		{"a second repeat after the fault's repeat was accepted", append(first[:3:3], call("b1", 2, 50, 204), call("b1", 2, 200, 204)),
			redeliveryCauses{spans: []faultSpan{kill}}, "cus001-2 delivered again, after b1"},
		{"a replayed event's repeat", append(first[:3:3], call("b1", 2, 200, 204)),
			redeliveryCauses{redrives: map[string][]time.Time{"cus001-2": {at(150)}}}, ""},
		{"a repeat before the event's replay", append(first[:3:3], call("b1", 2, 100, 204)),
			redeliveryCauses{redrives: map[string][]time.Time{"cus001-2": {at(150)}}}, "delivered again"},
		{"a replay of another event explains nothing", append(first[:3:3], call("b1", 2, 200, 204)),
			redeliveryCauses{redrives: map[string][]time.Time{"cus001-1": {at(150)}}}, "delivered again"},
		{"a refused event called again without a replay", []faultCall{call("a1", 0, 1, 422), call("a1", 0, 50, 422)},
			redeliveryCauses{}, "cus001-0 delivered again"},
		{"a suffix delivered again in order", append(first[:3:3], call("b1", 1, 20, 204), call("b1", 2, 21, 204)),
			redeliveryCauses{spans: []faultSpan{kill}}, ""},
		// 1 was accepted before the fault, so its repeat has a cause; but b1
		// goes back from 2 to 1 after the fault's effects ended.
		{"a process going back with no fault in between", append(first[:3:3], call("b1", 2, 20, 204), call("b1", 1, 40, 204)),
			redeliveryCauses{spans: []faultSpan{{what: "member-kill a", from: at(10), to: at(19)}}}, "out of order"},
		{"a zombie finishing its call while the next owner delivers", append(first[:3:3], call("b1", 1, 20, 204), call("a1", 2, 20.5, 204), call("b1", 2, 21, 204)),
			redeliveryCauses{spans: []faultSpan{kill}}, ""},
	}
	for _, tc := range cases {
		got := deliveryViolations(tc.calls, none, tc.causes)
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("%s: %q, want no violation", tc.name, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
			t.Errorf("%s: %q, want one violation saying %q", tc.name, got, tc.want)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/internal/wire"
)

// heal ends what the schedule left in effect: the destination answers
// everyone again, and the group is back to its three members.
func (r *scheduleRun) heal() {
	r.t.Helper()
	r.dest.setOutage(nil)
	r.waitGroup(3)
}

// settle resolves what is left the way an operator would, until every
// record of the events topic is consumed, every event has its final
// status and no customer is blocked: a parked customer is unparked (its
// blocker skipped when the destination refuses it for good), and a DEAD
// event the destination would now take is replayed.
func (r *scheduleRun) settle(l *scheduleLoad) {
	r.t.Helper()
	want := l.events()
	began := time.Now()
	r.waitUntil("every event settled", 10*time.Minute, func() (bool, string) {
		bs, err := r.blocked("")
		if err != nil {
			return false, err.Error()
		}
		for _, b := range bs {
			if b.State == "PARKED" {
				r.unpark(b)
			}
		}
		var total, unsettled int
		var dead []string
		err = r.pool.QueryRow(r.ctx, `SELECT count(*), count(*) FILTER (WHERE status NOT IN ('PROCESSED', 'DEAD')),
  coalesce(array_agg(event_id) FILTER (WHERE status = 'DEAD'), '{}') FROM events`).Scan(&total, &unsettled, &dead)
		if err != nil {
			return false, err.Error()
		}
		replayed := 0
		for _, id := range dead {
			if cust, seq, ok := parseScheduleEvent(id); ok && !scheduleRefused(r.cfg.seed, cust, seq) {
				r.admin(http.MethodPost, "/events/"+scheduleSource+"/"+id+"/replay")
				replayed++
			}
		}
		lag, err := r.lag()
		if err != nil {
			return false, err.Error()
		}
		return len(bs) == 0 && unsettled == 0 && replayed == 0 && lag == 0 && total == want,
			fmt.Sprintf("%d customers blocked, %d of %d events stored, %d not PROCESSED or DEAD, %d DEAD replayed, %d records not consumed",
				len(bs), total, want, unsettled, replayed, lag)
	})
	r.t.Logf("settled %s after the load stopped", time.Since(began).Round(time.Second))
}

// lag is how many records of the events topic lie beyond the positions
// stored in PostgreSQL.
func (r *scheduleRun) lag() (int64, error) { return storedLag(r.ctx, r.adm, r.pool) }

// verify checks the settled system against every answer the load got and
// every call the destination received, reporting each violation; it
// returns how many there were in the whole run.
func (r *scheduleRun) verify(l *scheduleLoad) int64 {
	r.t.Helper()
	refused := func(cust string, seq int) bool { return scheduleRefused(r.cfg.seed, cust, seq) }
	status := r.verifyStatuses(l, refused)
	r.verifyProcessedInOrder(refused)
	calls := r.dest.snapshot()
	causes := r.redeliveryCauses()
	r.t.Logf("faults that can cause re-delivery, with their margins:%s\n%s", causes.describeSpans(), describeRepeats(calls, causes))
	for _, v := range deliveryViolations(calls, refused, causes) {
		r.violation("destination: %s", v)
	}
	accepted := map[string]bool{}
	for _, c := range calls {
		if c.status/100 == 2 {
			accepted[c.eventID] = true
		}
	}
	for id, st := range status {
		if accepted[id] != (st == "PROCESSED") {
			r.violation("%s is %s; the destination accepted it: %v", id, st, accepted[id])
		}
	}
	// The audit trail: the group committed the end of the events topic to
	// Kafka (verify reads its position there), the sink copied every
	// receiver record to audit_log, and verify finds topic, table and
	// events in agreement.
	f := &killFixture{t: r.t, ctx: r.ctx, env: r.env, broker: r.cluster.Brokers(), pool: r.pool}
	// The receiver writes a summary of anonymous rejections past their
	// rate once an interval (10 s) after the first, and the pending ones
	// when it stops: stopped now, every summary is on the topic before the
	// sink's copy is awaited. (Verified while it ran, the last summary
	// could still be in the receiver, and its requests counted missing.)
	if code := r.receiver.terminate(); code != 0 {
		r.violation("the receiver %s exited %d on SIGTERM", r.receiver.name, code)
	}
	r.waitUntil("the relay to publish every row", 3*time.Minute, func() (bool, string) {
		n, err := audit.Unpublished(r.ctx, r.pool)
		return err == nil && n == 0, fmt.Sprintf("%d rows unpublished (%v)", n, err)
	})
	f.waitGroupCommitted()
	f.waitSinkCaughtUp()
	before := r.t.Failed()
	rep := f.runVerify()
	if !before && r.t.Failed() {
		r.violations.Add(1)
		r.describeMissing(rep.MissingFromTopic)
		// Missing for good, or not yet readable? Ask again later.
		time.Sleep(30 * time.Second) // a diagnosis after the failure, not a timing of the system
		again := f.runVerify()
		r.t.Logf("audit verify again 30 s later: %d records missing from the topic, %d pending, %d topic and %d table records",
			len(again.MissingFromTopic), again.Pending, again.TopicRecords, again.TableRecords)
	}
	r.verifyDecisions(l.requests())
	return r.violations.Load()
}

// describeMissing logs, for some of the table's records missing from the
// topic, what the table knows of them and where the relay stands.
func (r *scheduleRun) describeMissing(ids []string) {
	if len(ids) == 0 {
		return
	}
	rows, err := r.pool.Query(r.ctx, `SELECT format('%s %s %s %s/%s at %s xid %s seq %s commit %s; relay at (%s, %s) epoch %s',
  a.audit_id, a.actor, a.action, a.source, a.event_id, a.at, a.xid, a.seq, coalesce(c.commit_seq::text, 'none'), r.commit_seq, r.seq, r.epoch)
FROM audit_log a LEFT JOIN audit_commits c ON c.xid = a.xid CROSS JOIN audit_relay r
WHERE a.audit_id = ANY($1::uuid[]) ORDER BY a.seq`, ids)
	if err == nil {
		var lines []string
		if lines, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
			r.t.Logf("records missing from the topic (%d), the first and the last:\n\t%s\n\t...\n\t%s", len(lines),
				strings.Join(lines[:min(10, len(lines))], "\n\t"), strings.Join(lines[max(0, len(lines)-5):], "\n\t"))
		}
	}
	if err != nil {
		r.t.Logf("describe the missing records: %v", err)
	}
	r.traceOnTopic(ids)
	var n, commits int64
	var lo, hi *int64
	err = r.pool.QueryRow(r.ctx, `SELECT count(*), count(DISTINCT c.commit_seq), min(c.commit_seq), max(c.commit_seq)
FROM audit_log a LEFT JOIN audit_commits c ON c.xid = a.xid WHERE a.audit_id = ANY($1::uuid[])`, ids).Scan(&n, &commits, &lo, &hi)
	r.t.Logf("missing: %d records of %d transactions, commit_seq %v to %v (%v)", n, commits, deref(lo), deref(hi), err)
}

// traceOnTopic reads the audit topic uncommitted, control records
// included, and says where the records ids are and how the transaction of
// each ended there: committed records a read_committed reader missed,
// aborted ones, or records never written.
func (r *scheduleRun) traceOnTopic(ids []string) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cluster.Brokers()...), kgo.ConsumeTopics(wire.DefaultAuditTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	if err != nil {
		r.t.Logf("trace: %v", err)
		return
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(r.ctx, wire.DefaultAuditTopic)
	if err != nil {
		r.t.Logf("trace: %v", err)
		return
	}
	type found struct {
		part     int32
		off      int64
		pid      int64
		epoch    int16
		marker   string
		markerAt int64
	}
	var hits []*found
	open := map[[2]int64][]*found{} // partition, producer id -> records awaiting their marker
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	for len(remaining) > 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(rec *kgo.Record) {
			k := [2]int64{int64(rec.Partition), rec.ProducerID}
			if rec.Attrs.IsControl() {
				kind := "abort"
				if len(rec.Key) >= 4 && rec.Key[3] == 1 {
					kind = "commit"
				}
				for _, f := range open[k] {
					f.marker, f.markerAt = kind, rec.Offset
				}
				delete(open, k)
			} else {
				var a wire.AuditRecord
				if json.Unmarshal(rec.Value, &a) == nil && want[a.AuditID] {
					f := &found{part: rec.Partition, off: rec.Offset, pid: rec.ProducerID, epoch: rec.ProducerEpoch, marker: "none"}
					hits = append(hits, f)
					open[k] = append(open[k], f)
				}
			}
			if end, ok := remaining[rec.Partition]; ok && rec.Offset >= end-1 {
				delete(remaining, rec.Partition)
			}
		})
	}
	byMarker := map[string]int{}
	for _, f := range hits {
		byMarker[f.marker]++
	}
	r.t.Logf("trace: %d of the %d missing records are on the topic (read uncommitted); by their transaction's marker: %v", len(hits), len(ids), byMarker)
	for _, f := range hits[:min(8, len(hits))] {
		r.t.Logf("trace: partition %d offset %d producer %d epoch %d: %s marker at %d", f.part, f.off, f.pid, f.epoch, f.marker, f.markerAt)
	}
	// What the brokers said about the relay's transactional id.
	for id := 1; id <= 3; id++ {
		b, err := os.ReadFile(filepath.Join(r.cluster.Dir(), fmt.Sprintf("node-%d", id), "server.log"))
		if err != nil {
			r.t.Logf("trace: node %d log: %v", id, err)
			continue
		}
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "hookstream-audit-relay") || strings.Contains(l, "TransactionCoordinator") {
				lines = append(lines, l)
			}
		}
		r.t.Logf("trace: node %d, %d lines on transactions, the last:\n\t%s", id, len(lines), strings.Join(lines[max(0, len(lines)-25):], "\n\t"))
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// verifyStatuses: every event the load stored is PROCESSED, except those
// the destination refuses for good, which operators skipped and left DEAD;
// nothing else is in events, and no customer is blocked.
func (r *scheduleRun) verifyStatuses(l *scheduleLoad, refused func(string, int) bool) map[string]string {
	r.t.Helper()
	status := map[string]string{}
	rows, err := r.pool.Query(r.ctx, `SELECT event_id, status FROM events`)
	if err != nil {
		r.t.Fatal(err)
	}
	var id, st string
	if _, err := pgx.ForEachRow(rows, []any{&id, &st}, func() error { status[id] = st; return nil }); err != nil {
		r.t.Fatal(err)
	}
	expected := 0
	for c, n := range l.next {
		cust := scheduleCustomer(c)
		for seq := range n {
			expected++
			want := "PROCESSED"
			if refused(cust, seq) {
				want = "DEAD"
			}
			if got := status[faultEvent(cust, seq)]; got != want {
				r.violation("%s is %q, want %s", faultEvent(cust, seq), got, want)
			}
		}
	}
	if len(status) != expected {
		r.violation("%d events stored, want %d (the 4xx requests must leave nothing)", len(status), expected)
	}
	var blocks int
	if err := r.pool.QueryRow(r.ctx, `SELECT count(*) FROM customer_blocks`).Scan(&blocks); err != nil {
		r.t.Fatal(err)
	}
	if blocks != 0 {
		r.violation("%d rows left in customer_blocks", blocks)
	}
	return status
}

// verifyProcessedInOrder: audit_log has one PROCESSED record per event
// processed, each customer's in sequence order.
func (r *scheduleRun) verifyProcessedInOrder(refused func(string, int) bool) {
	r.t.Helper()
	if _, err := checkProcessedInOrder(r.ctx, r.pool, refused, r.violation); err != nil {
		r.t.Fatal(err)
	}
}

// verifyDecisions: each request has the receiver decisions its answer
// stands for, in audit_log (whose agreement with the topic verify
// checked). A 202 or 409 has exactly one, travelling in its event record
// or awaited. A 4xx or 503 has its REJECTED record (an unsigned request
// past its rate is counted in a summary record instead), unless the receiver
// was killed within the rejection producer's delivery timeout after the
// answer (the record may have been in its buffer). A request answered 503,
// or not at all, may also have the decision of a record that landed after
// its answer (the outcome a timeout cannot know: see docs/design.md).
func (r *scheduleRun) verifyDecisions(reqs []scheduleRequest) {
	r.t.Helper()
	rows, err := r.pool.Query(r.ctx, `SELECT coalesce(detail->>'client_request_id', ''), action, coalesce(event_id, ''), coalesce(http_status, 0),
  coalesce((detail->'summary'->>'count')::int, 0)
FROM audit_log WHERE actor = 'ingest'`)
	if err != nil {
		r.t.Fatal(err)
	}
	byRequest := map[string][]killDecision{}
	var client string
	var d killDecision
	var count, summarized, unrecorded int
	if _, err := pgx.ForEachRow(rows, []any{&client, &d.action, &d.eventID, &d.status, &count}, func() error {
		if count > 0 { // a summary of anonymous rejections past their rate
			summarized += count
			return nil
		}
		byRequest[client] = append(byRequest[client], d)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, q := range reqs {
		ds := byRequest[q.clientID]
		delete(byRequest, q.clientID)
		excused := r.receiverKilledWithin(q.at, rejectionDeliveryTimeout)
		if len(ds) == 0 && q.status == http.StatusUnauthorized && !excused {
			unrecorded++ // counted in a summary, unless it is missing
			continue
		}
		if v := decisionsViolation(q, ds, excused); v != "" {
			r.violation("request %s (%s %s) answered %d %s: %s: decisions %v", q.clientID, q.kind, q.eventID, q.status, q.err, v, ds)
		}
		outcomes[fmt.Sprintf("%s %d -> %d", q.kind, q.status, len(ds))]++
	}
	for client, ds := range byRequest {
		r.violation("receiver decisions of no request of the load (client request id %q): %v", client, ds)
	}
	if unrecorded > summarized {
		r.violation("%d unsigned requests answered 401 have no record of their own, and the summaries count %d", unrecorded, summarized)
	}
	r.t.Logf("requests by kind, answer -> decisions: %v", outcomes)
}

// decisionsViolation says what is wrong with the decisions ds of request
// q, or "".
var kindStatus = map[string]int{"bad_signature": http.StatusUnauthorized, "malformed": http.StatusBadRequest}

func decisionsViolation(q scheduleRequest, ds []killDecision, excused bool) string {
	var rejected, landed int
	for _, d := range ds {
		switch {
		case d.action == string(wire.ActionRejected):
			// Unanswered, the request may have been rejected for what it
			// is, or answered 503 by a receiver about to die.
			if d.status != q.status && (q.status != 0 || d.status != http.StatusServiceUnavailable && d.status != kindStatus[q.kind]) {
				return "a REJECTED record with another status"
			}
			rejected++
		case q.kind == "new" || q.kind == "duplicate":
			ok := d.status == http.StatusAccepted && (d.action == string(wire.ActionAccepted) ||
				d.action == string(wire.ActionRetryAccepted) || d.action == string(wire.ActionDuplicate)) ||
				d.status == http.StatusConflict && d.action == string(wire.ActionDuplicate)
			if !ok || q.status != 0 && q.status != http.StatusServiceUnavailable && d.status != q.status {
				return "a decision its answer does not allow"
			}
			landed++
		default:
			return "a decision about a request that was not signed or not JSON"
		}
	}
	switch q.status {
	case http.StatusAccepted, http.StatusConflict:
		if landed != 1 || rejected != 0 {
			return "want exactly the decision of its answer"
		}
	case http.StatusBadRequest, http.StatusUnauthorized:
		if rejected > 1 || rejected == 0 && !excused {
			return "want exactly one REJECTED record"
		}
	case http.StatusServiceUnavailable:
		if rejected > 1 || landed > 1 || rejected == 0 && !excused {
			return "want its REJECTED record, and at most one decision that landed late"
		}
	case 0:
		if rejected > 1 || landed > 1 {
			return "want at most one REJECTED record and one decision that landed late"
		}
	default:
		return "an answer the load does not expect"
	}
	return ""
}

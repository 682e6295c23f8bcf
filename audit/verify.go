package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/wire"
)

// VerifyConfig says what Verify compares.
type VerifyConfig struct {
	Pool    *pgxpool.Pool // required
	Brokers []string      // required
	// KafkaOpts are applied to the clients that read the topics (TLS,
	// SASL). Default none.
	KafkaOpts []kgo.Opt
	// Topics names the events and audit topics. Default the wire defaults.
	Topics wire.Topics
	// Group is the consumer group of the events topic. Its committed
	// offsets say which event records have been processed, and so must
	// have their decision in the table; later ones are counted as
	// Unconsumed. Default "hookstream".
	Group string
	// Since starts the window: audit records at or after it, events
	// received at or after it, event records written at or after it. The
	// audit topic is compacted, so keep the window within its
	// min.compaction.lag.ms (7 days by default).
	Since time.Time
}

// Report is what Verify found.
type Report struct {
	Since time.Time `json:"since"`
	// TopicRecords and TableRecords count the audit records in the window.
	TopicRecords int `json:"topic_records"`
	TableRecords int `json:"table_records"`
	// Pending counts table records the relay has not published yet: not a
	// disagreement.
	Pending int `json:"pending"`
	// MissingFromTable lists audit_ids in the topic but not the table;
	// MissingFromTopic the reverse.
	MissingFromTable []string `json:"missing_from_table"`
	MissingFromTopic []string `json:"missing_from_topic"`
	// Events counts the rows of events in the window, whose decisions
	// were reconciled.
	Events int `json:"events"`
	// EventRecords counts the records of the events topic in the window
	// that the consumer group has processed, whose ACCEPTED decisions were
	// looked up; Unconsumed counts those it has not reached yet (not
	// checked: run again later).
	EventRecords int `json:"event_records"`
	Unconsumed   int `json:"unconsumed"`
	// Quarantined counts the audit records the sink could not copy into
	// the table (audit_quarantine) in the window.
	Quarantined int `json:"quarantined"`
	// MissingDecisions lists decisions that events imply and that are
	// missing from the table, the topic or both.
	MissingDecisions []MissingDecision `json:"missing_decisions"`
}

// MissingDecision is a decision an event implies that is missing.
type MissingDecision struct {
	Source  string `json:"source"`
	EventID string `json:"event_id"`
	// Action is ACCEPTED (an ACCEPTED or RETRY_ACCEPTED record), PROCESSED
	// or DEAD_LETTERED.
	Action wire.Action `json:"action"`
	// MissingFrom is "table", "topic" or both.
	MissingFrom []string `json:"missing_from"`
	// AuditID is the missing record's id when the event record carried it
	// (wire.HeaderAudit).
	AuditID string `json:"audit_id,omitempty"`
	// Partition and Offset are the event record's on the events topic
	// when the decision was looked up for one.
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
}

// OK reports whether topic and table agree and no decision is missing.
func (r *Report) OK() bool {
	return len(r.MissingFromTable) == 0 && len(r.MissingFromTopic) == 0 && len(r.MissingDecisions) == 0
}

// Verify compares the audit topic and the audit_log table over the
// window, and reconciles the decisions with the events: every event in
// events has an ACCEPTED (or RETRY_ACCEPTED) record and, when finished, its
// terminal record (PROCESSED, DEAD_LETTERED), in both places; every
// processed record of the events topic has its ACCEPTED decision (the
// audit-record header's audit_id, or for records written before that
// header existed, an ACCEPTED record of the same event at the same
// partition and offset) in both places. A record the relay has yet to
// publish is pending, not missing from the topic.
func Verify(ctx context.Context, cfg VerifyConfig) (*Report, error) { return verify(ctx, cfg, nil) }

// verify is Verify; afterTopic, when set, runs once the topic is read (a
// test's way to publish meanwhile).
func verify(ctx context.Context, cfg VerifyConfig, afterTopic func()) (*Report, error) {
	if cfg.Pool == nil || len(cfg.Brokers) == 0 {
		return nil, errors.New("audit: verify needs Pool and Brokers")
	}
	cfg.Topics = cfg.Topics.WithDefaults()
	if cfg.Group == "" {
		cfg.Group = "hookstream"
	}
	v := &verifier{cfg: cfg, rep: &Report{Since: cfg.Since, MissingFromTable: []string{}, MissingFromTopic: []string{},
		MissingDecisions: []MissingDecision{}}}
	// The event records first: a missing ACCEPTED they find is not
	// reported again for the event.
	// The relay's position first, then the topic: every row at or before
	// the position was committed to Kafka before the position was stored,
	// so it is on the topic when verify lists the topic's ends after it.
	// Rows the relay publishes while verify reads are pending. (With the
	// position read after the topic, a relay catching up published rows
	// between the two reads, and verify reported them missing from the
	// topic: the fault schedule found it.)
	for _, step := range []func(context.Context) error{v.readRelayPosition, v.readAuditTopic, v.compareTable, v.reconcileEventRecords, v.reconcileEvents, v.countQuarantined} {
		if err := step(ctx); err != nil {
			return nil, err
		}
		if afterTopic != nil && len(v.onTopic) > 0 {
			afterTopic()
			afterTopic = nil
		}
	}
	return v.rep, nil
}

type eventKey struct{ source, eventID string }

// recordKey is an event record's place on the events topic.
type recordKey struct {
	eventKey
	partition int32
	offset    int64
}

// verifier holds what one Verify has read so far.
type verifier struct {
	cfg VerifyConfig
	rep *Report
	// relay is the relay's position when verify began.
	relay position
	// onTopic holds every audit_id on the topic, whatever its time, and
	// inWindow those in the window; actions the (event, action) pairs,
	// and accepted the events topic's places named by ACCEPTED and
	// RETRY_ACCEPTED records.
	onTopic, inWindow map[string]bool
	actions           map[eventKey]map[wire.Action]bool
	accepted          map[recordKey]bool
	// acceptedMissing: events one of whose records was reported without
	// its ACCEPTED decision, not to be reported again for the event.
	acceptedMissing map[eventKey]bool
}

func (v *verifier) readAuditTopic(ctx context.Context) error {
	v.onTopic, v.inWindow = map[string]bool{}, map[string]bool{}
	v.actions, v.accepted = map[eventKey]map[wire.Action]bool{}, map[recordKey]bool{}
	err := readTopic(ctx, v.cfg.Brokers, v.cfg.KafkaOpts, v.cfg.Topics.Audit, nil, false, func(r *kgo.Record) error {
		var a wire.AuditRecord
		if err := json.Unmarshal(r.Value, &a); err != nil || a.AuditID == "" {
			return nil // quarantined by the sink, counted there
		}
		v.onTopic[a.AuditID] = true
		if !a.At.Before(v.cfg.Since) {
			v.inWindow[a.AuditID] = true
		}
		k := eventKey{a.Source, a.EventID}
		if v.actions[k] == nil {
			v.actions[k] = map[wire.Action]bool{}
		}
		v.actions[k][a.Action] = true
		if isAccepted(a.Action) && a.Partition != nil && a.Offset != nil {
			v.accepted[recordKey{k, *a.Partition, *a.Offset}] = true
		}
		return nil
	})
	v.rep.TopicRecords = len(v.inWindow)
	return err
}

func isAccepted(a wire.Action) bool { return a == wire.ActionAccepted || a == wire.ActionRetryAccepted }

// pendingSQL is true for an audit_log row a that the relay had not
// published when verify began; the query joins audit_commits c on a.xid
// (left) and the relay's position then as r (relayAt).
const pendingSQL = `coalesce((c.commit_seq, a.seq) > (r.commit_seq, r.seq), false)`

// readRelayPosition reads where the relay stands: rows after it are
// pending.
func (v *verifier) readRelayPosition(ctx context.Context) error {
	if err := v.cfg.Pool.QueryRow(ctx, `SELECT commit_seq, seq FROM audit_relay WHERE id = 1`).Scan(&v.relay.commit, &v.relay.seq); err != nil {
		return fmt.Errorf("audit: read the relay's position: %w", err)
	}
	return nil
}

// relayAt is the relay's position when verify began, as a row (commit_seq,
// seq) to join.
func (v *verifier) relayAt() string {
	return fmt.Sprintf("(SELECT %d::bigint AS commit_seq, %d::bigint AS seq)", v.relay.commit, v.relay.seq)
}

// compareTable compares the table's records in the window with the topic's.
func (v *verifier) compareTable(ctx context.Context) error {
	rows, err := v.cfg.Pool.Query(ctx, `SELECT a.audit_id::text, `+pendingSQL+`
FROM audit_log a LEFT JOIN audit_commits c ON c.xid = a.xid CROSS JOIN `+v.relayAt()+` r WHERE a.at >= $1`, v.cfg.Since)
	if err != nil {
		return fmt.Errorf("audit: read table: %w", err)
	}
	inTable := map[string]bool{}
	var id string
	var pending bool
	_, err = pgx.ForEachRow(rows, []any{&id, &pending}, func() error {
		inTable[id] = true
		if pending {
			v.rep.Pending++
		} else if !v.onTopic[id] {
			v.rep.MissingFromTopic = append(v.rep.MissingFromTopic, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: read table: %w", err)
	}
	for id := range v.inWindow {
		if !inTable[id] {
			v.rep.MissingFromTable = append(v.rep.MissingFromTable, id)
		}
	}
	sort.Strings(v.rep.MissingFromTable)
	sort.Strings(v.rep.MissingFromTopic)
	v.rep.TableRecords = len(inTable)
	return nil
}

// eventState is an event's status and where its decisive records are.
type eventState struct {
	status           string
	inTable, pending map[wire.Action]bool
}

// reconcileEvents checks every event in the window for its ACCEPTED
// record and, once PROCESSED or DEAD, its terminal record.
func (v *verifier) reconcileEvents(ctx context.Context) error {
	rows, err := v.cfg.Pool.Query(ctx, `SELECT e.source, e.event_id, e.status, coalesce(a.action, ''), `+pendingSQL+`
FROM events e
LEFT JOIN audit_log a ON a.source = e.source AND a.event_id = e.event_id
                     AND a.action IN ('ACCEPTED', 'RETRY_ACCEPTED', 'PROCESSED', 'DEAD_LETTERED')
LEFT JOIN audit_commits c ON c.xid = a.xid
CROSS JOIN `+v.relayAt()+` r
WHERE coalesce(e.received_at, e.created_at) >= $1`, v.cfg.Since)
	if err != nil {
		return fmt.Errorf("audit: read events: %w", err)
	}
	events := map[eventKey]*eventState{}
	var k eventKey
	var status, action string
	var pending bool
	_, err = pgx.ForEachRow(rows, []any{&k.source, &k.eventID, &status, &action, &pending}, func() error {
		st := events[k]
		if st == nil {
			st = &eventState{status: status, inTable: map[wire.Action]bool{}, pending: map[wire.Action]bool{}}
			events[k] = st
		}
		if action != "" {
			st.inTable[wire.Action(action)] = true
			st.pending[wire.Action(action)] = st.pending[wire.Action(action)] || pending
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: read events: %w", err)
	}
	v.rep.Events = len(events)
	keys := make([]eventKey, 0, len(events))
	for k := range events {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].source < keys[j].source || keys[i].source == keys[j].source && keys[i].eventID < keys[j].eventID
	})
	for _, k := range keys {
		st := events[k]
		if !v.acceptedMissing[k] {
			v.expect(k, st, wire.ActionAccepted, wire.ActionRetryAccepted)
		}
		switch st.status {
		case "PROCESSED":
			v.expect(k, st, wire.ActionProcessed)
		case "DEAD":
			v.expect(k, st, wire.ActionDeadLettered)
		}
	}
	return nil
}

// expect reports the event's decision missing where none of the actions
// is: the first one names it.
func (v *verifier) expect(k eventKey, st *eventState, actions ...wire.Action) {
	inTable, onTopic := false, false
	for _, a := range actions {
		inTable = inTable || st.inTable[a]
		onTopic = onTopic || v.actions[k][a] || st.pending[a]
	}
	if where := missingFrom(inTable, onTopic); len(where) > 0 {
		v.rep.MissingDecisions = append(v.rep.MissingDecisions, MissingDecision{Source: k.source, EventID: k.eventID, Action: actions[0], MissingFrom: where})
	}
}

func missingFrom(inTable, onTopic bool) []string {
	var where []string
	if !inTable {
		where = append(where, "table")
	}
	if !onTopic {
		where = append(where, "topic")
	}
	return where
}

// eventRecord is a processed record of the events topic and the decision
// it carried.
type eventRecord struct {
	recordKey
	auditID string      // from wire.HeaderAudit; "" for a record without it
	action  wire.Action // the header record's, ACCEPTED without one
	// found and pending: the decision is in the table, and not yet
	// published.
	found, pending bool
}

// reconcileEventRecords checks that every record of the events topic in
// the window that the consumer group has processed has its decision.
func (v *verifier) reconcileEventRecords(ctx context.Context) error {
	v.acceptedMissing = map[eventKey]bool{}
	recs, err := v.readEventRecords(ctx)
	if err != nil {
		return err
	}
	if err := v.lookUpDecisions(ctx, recs); err != nil {
		return err
	}
	for _, er := range recs {
		onTopic := er.pending
		if er.auditID != "" {
			onTopic = onTopic || v.onTopic[er.auditID]
		} else {
			onTopic = onTopic || v.accepted[er.recordKey]
		}
		where := missingFrom(er.found, onTopic)
		if len(where) == 0 {
			continue
		}
		p, o := er.partition, er.offset
		v.rep.MissingDecisions = append(v.rep.MissingDecisions, MissingDecision{Source: er.source, EventID: er.eventID, Action: er.action,
			MissingFrom: where, AuditID: er.auditID, Partition: &p, Offset: &o})
		v.acceptedMissing[er.eventKey] = true
	}
	return nil
}

// readEventRecords reads the events topic from the first offsets at or
// after Since to the end, keeping the records below the group's
// committed offsets.
func (v *verifier) readEventRecords(ctx context.Context) ([]*eventRecord, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(v.cfg.Brokers...), kgo.ClientID("hookstream-audit-reader")}, v.cfg.KafkaOpts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := v.cfg.Topics.Events
	starts, err := adm.ListOffsetsAfterMilli(ctx, v.cfg.Since.UnixMilli(), topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("audit: offsets of %s at %s: %w", topic, v.cfg.Since.Format(time.RFC3339), err)
	}
	from := map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) { from[o.Partition] = o.Offset })
	committed, err := fetchGroupOffsets(ctx, adm, v.cfg.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // no consumer yet: nothing processed
	}
	if err != nil {
		return nil, fmt.Errorf("audit: offsets of group %s: %w", v.cfg.Group, err)
	}
	var recs []*eventRecord
	err = readTopic(ctx, v.cfg.Brokers, v.cfg.KafkaOpts, topic, from, false, func(r *kgo.Record) error {
		if c, ok := committed.Lookup(topic, r.Partition); !ok || c.Err != nil || r.Offset >= c.At {
			v.rep.Unconsumed++
			return nil
		}
		v.rep.EventRecords++
		src, _ := header(r, wire.HeaderSource)
		id, _ := header(r, wire.HeaderEventID)
		er := &eventRecord{recordKey: recordKey{eventKey{src, id}, r.Partition, r.Offset}, action: wire.ActionAccepted}
		if raw, ok := header(r, wire.HeaderAudit); ok {
			var a wire.AuditRecord
			if err := json.Unmarshal([]byte(raw), &a); err == nil && a.AuditID != "" {
				er.auditID, er.action = a.AuditID, a.Action
			}
		}
		recs = append(recs, er)
		return nil
	})
	return recs, err
}

// lookUpDecisions marks the records whose decision is in the table: by
// the header's audit_id, or for a record without one, an ACCEPTED or
// RETRY_ACCEPTED record of its event at its partition and offset.
func (v *verifier) lookUpDecisions(ctx context.Context, recs []*eventRecord) error {
	const chunk = 5000
	byID := map[string][]*eventRecord{}
	var ids []string
	var legacy []*eventRecord
	for _, er := range recs {
		if er.auditID == "" {
			legacy = append(legacy, er)
			continue
		}
		u, err := uuid.Parse(er.auditID)
		if err != nil {
			continue // not a UUID: cannot be in the table
		}
		id := u.String() // the table's spelling
		if byID[id] == nil {
			ids = append(ids, id)
		}
		byID[id] = append(byID[id], er)
	}
	for start := 0; start < len(ids); start += chunk {
		rows, err := v.cfg.Pool.Query(ctx, `SELECT a.audit_id::text, `+pendingSQL+`
FROM audit_log a LEFT JOIN audit_commits c ON c.xid = a.xid CROSS JOIN `+v.relayAt()+` r
WHERE a.audit_id = ANY($1::uuid[])`, ids[start:min(start+chunk, len(ids))])
		if err != nil {
			return fmt.Errorf("audit: look up decisions: %w", err)
		}
		var id string
		var pending bool
		if _, err := pgx.ForEachRow(rows, []any{&id, &pending}, func() error {
			for _, er := range byID[id] {
				er.found, er.pending = true, pending
			}
			return nil
		}); err != nil {
			return fmt.Errorf("audit: look up decisions: %w", err)
		}
	}
	for start := 0; start < len(legacy); start += chunk {
		if err := v.lookUpLegacy(ctx, legacy[start:min(start+chunk, len(legacy))]); err != nil {
			return err
		}
	}
	return nil
}

func (v *verifier) lookUpLegacy(ctx context.Context, recs []*eventRecord) error {
	srcs, ids, parts, offs := make([]string, len(recs)), make([]string, len(recs)), make([]int32, len(recs)), make([]int64, len(recs))
	for i, er := range recs {
		srcs[i], ids[i], parts[i], offs[i] = er.source, er.eventID, er.partition, er.offset
	}
	rows, err := v.cfg.Pool.Query(ctx, `SELECT x.i, bool_or(`+pendingSQL+`)
FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) WITH ORDINALITY AS x(source, event_id, p, o, i)
JOIN audit_log a ON a.source = x.source AND a.event_id = x.event_id AND a.kafka_partition = x.p AND a.kafka_offset = x.o
                AND a.action IN ('ACCEPTED', 'RETRY_ACCEPTED')
LEFT JOIN audit_commits c ON c.xid = a.xid
CROSS JOIN `+v.relayAt()+` r
GROUP BY x.i`, srcs, ids, parts, offs)
	if err != nil {
		return fmt.Errorf("audit: look up decisions: %w", err)
	}
	var i int64
	var pending bool
	if _, err := pgx.ForEachRow(rows, []any{&i, &pending}, func() error {
		recs[i-1].found, recs[i-1].pending = true, pending
		return nil
	}); err != nil {
		return fmt.Errorf("audit: look up decisions: %w", err)
	}
	return nil
}

func (v *verifier) countQuarantined(ctx context.Context) error {
	if err := v.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_quarantine WHERE quarantined_at >= $1`, v.cfg.Since).Scan(&v.rep.Quarantined); err != nil {
		return fmt.Errorf("audit: count quarantined records: %w", err)
	}
	return nil
}

// fetchGroupOffsets fetches the group's committed offsets, asking again
// for a while when the group's coordinator is loading or moving: on a
// cluster whose offsets topic is new, or after a broker's fail-over, the
// first answer is COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR, which says
// nothing about the trail.
func fetchGroupOffsets(ctx context.Context, adm *kadm.Client, group string) (kadm.OffsetResponses, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		committed, err := adm.FetchOffsets(ctx, group)
		var ke *kerr.Error
		if err == nil || !errors.As(err, &ke) || !ke.Retriable || time.Now().After(deadline) {
			return committed, err
		}
		if !backoff.Sleep(ctx, 250*time.Millisecond) {
			return committed, err
		}
	}
}

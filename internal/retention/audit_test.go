package retention_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/retention"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

type auditPart struct {
	name   string
	lo, hi *time.Time // nil lo: MINVALUE
}

// auditPartitions are audit_log's partitions, oldest first.
func auditPartitions(t *testing.T, pool *pgxpool.Pool) []auditPart {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT c.relname,
       substring(b FROM 'FROM \(''([^'']+)''\)')::timestamptz, substring(b FROM 'TO \(''([^'']+)''\)')::timestamptz
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid, pg_get_expr(c.relpartbound, c.oid) b
WHERE i.inhparent = 'audit_log'::regclass ORDER BY 3`)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditPart
	var p auditPart
	if _, err := pgx.ForEachRow(rows, []any{&p.name, &p.lo, &p.hi}, func() error { out = append(out, p); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func auditNames(parts []auditPart) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p.name)
	}
	return out
}

// t0 is the upper bound of audit_log_p0, the partition of the rows
// before migration 10.
func t0(t *testing.T, pool *pgxpool.Pool) time.Time {
	t.Helper()
	parts := auditPartitions(t, pool)
	if len(parts) == 0 || parts[0].name != "audit_log_p0" {
		t.Fatalf("partitions %v, want audit_log_p0 first", auditNames(parts))
	}
	return *parts[0].hi
}

// insertAudit writes rows as the sink copies them (no xid: already
// published, nothing for the relay).
func insertAudit(t *testing.T, pool *pgxpool.Pool, eventID, requestID string, at time.Time) {
	t.Helper()
	var ev, req any
	if eventID != "" {
		ev = eventID
	}
	if requestID != "" {
		req = requestID
	}
	exec(t, pool, `INSERT INTO audit_log (audit_id, source, event_id, request_id, action, actor, instance, at, xid)
VALUES (gen_random_uuid(), CASE WHEN $1::text IS NOT NULL THEN 's' END, $1, $2, 'ACCEPTED', 'ingest', 'test', $3, NULL)`, ev, req, at)
}

// checkingProducer writes through p, and records whether the partition
// named part was still attached to audit_log at each write.
type checkingProducer struct {
	p        retention.Producer
	pool     *pgxpool.Pool
	part     string
	detached bool
	fail     error
}

func (c *checkingProducer) ProduceSync(ctx context.Context, recs ...*kgo.Record) kgo.ProduceResults {
	var attached bool
	if err := c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'audit_log'::regclass AND inhrelid = to_regclass($1))`, c.part).Scan(&attached); err != nil || !attached {
		c.detached = true
	}
	if c.fail != nil {
		out := make(kgo.ProduceResults, len(recs))
		for i, r := range recs {
			out[i] = kgo.ProduceResult{Record: r, Err: c.fail}
		}
		return out
	}
	return c.p.ProduceSync(ctx, recs...)
}

// tombstoneKeys reads the n records of topic and returns their keys,
// failing on one that is not a tombstone.
func tombstoneKeys(t *testing.T, brokers []string, topic string, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	for len(keys) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if r.Value != nil {
				t.Errorf("record %q on the audit topic is not a tombstone", r.Key)
			}
			keys = append(keys, string(r.Key))
		})
	}
	sort.Strings(keys)
	return keys
}

// On a fake clock: a round keeps a whole period of audit_log partitions
// ahead of now, and drops a partition once its upper bound is older than
// the audit retention, after tombstones — written while it is still
// attached — for exactly the keys of its rows that have no row in a later
// partition: an event's (source/event_id) and a request's (its id).
func TestAuditPartitionsAheadAndDroppedBehind(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	producer, tp := auditProducer(t)
	check := &checkingProducer{p: producer, pool: pool, part: "audit_log_p0"}
	const day = 24 * time.Hour
	// Partitions of a day: half a retention of three days.
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: check, AuditTopic: tp.Audit, TombstoneBatch: 2}
	if got := retention.AuditPeriodFor(3 * day); got != day {
		t.Fatalf("AuditPeriodFor(3d) = %s, want a day", got)
	}
	if got := retention.AuditPeriodFor(retention.DefaultAuditRetention); got != 7*day {
		t.Fatalf("AuditPeriodFor(90d) = %s, want a week", got)
	}
	start := t0(t, pool)
	before := start.Add(-time.Hour)
	insertAudit(t, pool, "gone", "", before)
	insertAudit(t, pool, "gone", "", before.Add(time.Minute)) // two rows, one key
	insertAudit(t, pool, "also-gone", "", before)
	insertAudit(t, pool, "kept", "", before)
	insertAudit(t, pool, "kept", "", start.Add(8*day)) // a later row, in a partition that stays
	insertAudit(t, pool, "", "req-gone", before)

	// Migration 10 made two weeks of partitions after t0: two days in,
	// nothing to make (a day is left and more), nothing expired.
	rep := run(t, cfg, start.Add(2*day))
	if len(rep.AuditCreated)+len(rep.AuditDropped) != 0 {
		t.Errorf("2 days in: %+v, want nothing created or dropped", rep)
	}
	// 13 days in, the next day's partition is made. audit_log_p0 ends at
	// t0: it expired 3 days later; the week after it, 10 days after t0:
	// both go, the oldest first. The next week's, which has the later row
	// of s/kept, expires at 17.
	rep = run(t, cfg, start.Add(13*day+time.Hour))
	want := []string{"audit_log_p" + start.Add(14*day).Format("20060102")}
	if !slices.Equal(rep.AuditCreated, want) {
		t.Errorf("13 days in: created %v, want %v", rep.AuditCreated, want)
	}
	parts := auditPartitions(t, pool)
	last := parts[len(parts)-1]
	if !last.lo.Equal(start.Add(14*day)) || !last.hi.Equal(start.Add(15*day)) {
		t.Errorf("last partition %s [%v, %v), want a day from %v", last.name, last.lo, last.hi, start.Add(14*day))
	}
	if want := []string{"audit_log_p0", "audit_log_p" + start.Format("20060102")}; !slices.Equal(rep.AuditDropped, want) {
		t.Fatalf("13 days in: dropped %v, want %v", rep.AuditDropped, want)
	}
	if check.detached {
		t.Error("a tombstone was written after audit_log_p0 was detached")
	}
	if rep.Tombstones != 3 {
		t.Errorf("%d tombstones, want 3", rep.Tombstones)
	}
	if got, want := tombstoneKeys(t, testenv.Kafka(t), tp.Audit, 3), []string{"req-gone", "s/also-gone", "s/gone"}; !slices.Equal(got, want) {
		t.Errorf("tombstones %q, want %q (not s/kept: it has a later row)", got, want)
	}
	var rows int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%d rows left (%v), want the later row of s/kept", rows, err)
	}
	var tables int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_class WHERE relname IN ('audit_log_p0', $1)`,
		"audit_log_p"+start.Format("20060102")).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("%d of the dropped tables remain (%v)", tables, err)
	}
	if again := run(t, cfg, start.Add(13*day+time.Hour)); len(again.AuditCreated)+len(again.AuditDropped) != 0 {
		t.Errorf("the round again: %+v", again)
	}
}

// A tombstone the broker does not acknowledge leaves the partition, and
// its rows, in place; the next round writes them and drops it. So does a
// round that stops after the tombstones, before the drop (its detach
// waited DetachTimeout for a transaction that reads audit_log): the next
// round after that transaction drops the partition.
func TestAuditDropWaitsForTombstonesAndDetach(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	producer, tp := auditProducer(t)
	check := &checkingProducer{p: producer, pool: pool, part: "audit_log_p0", fail: errors.New("not acknowledged")}
	const day = 24 * time.Hour
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: check, AuditTopic: tp.Audit, DetachTimeout: 200 * time.Millisecond}
	start := t0(t, pool)
	insertAudit(t, pool, "gone", "", start.Add(-time.Hour))
	expiry := start.Add(3*day + time.Hour)

	if _, err := retention.Run(ctx, cfg, expiry); err == nil {
		t.Error("a round whose tombstones failed: no error")
	}
	if got := auditNames(auditPartitions(t, pool)); got[0] != "audit_log_p0" {
		t.Errorf("after failed tombstones: partitions %v, want audit_log_p0 kept", got)
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%d rows (%v), want the one kept", rows, err)
	}

	check.fail = nil
	reader, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reader.Rollback(ctx) }()
	if _, err := reader.Exec(ctx, `SELECT count(*) FROM audit_log`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := retention.Run(ctx, cfg, expiry)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the round dropped audit_log_p0 while a transaction that reads it is open")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the round still waits for an open transaction after 30s")
	}
	if err := reader.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	rep := run(t, cfg, expiry)
	if !slices.Contains(rep.AuditDropped, "audit_log_p0") || slices.Contains(auditNames(auditPartitions(t, pool)), "audit_log_p0") {
		t.Errorf("once the transaction ended: %+v; want audit_log_p0 dropped", rep)
	}
	if keys := tombstoneKeys(t, testenv.Kafka(t), tp.Audit, 1); !slices.Equal(keys, []string{"s/gone"}) {
		t.Errorf("tombstones %q, want s/gone", keys)
	}
	if check.detached {
		t.Error("a tombstone was written after audit_log_p0 was detached")
	}
}

// A partition that holds rows the audit relay has not published is kept
// past its retention: dropping it would lose them from the topic.
func TestAuditDropKeepsUnpublishedRows(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	const day = 24 * time.Hour
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: &keyProducer{}}
	start := t0(t, pool)
	// Written as the consumer writes: with its transaction's id, counted
	// by the commit clock; the relay's cursor is still at the start.
	exec(t, pool, `INSERT INTO audit_log (audit_id, source, event_id, action, actor, instance, at)
VALUES (gen_random_uuid(), 's', 'e', 'PROCESSED', 'consumer', 'test', $1)`, start.Add(-time.Hour))
	_, err := retention.Run(ctx, cfg, start.Add(3*day+time.Hour))
	if err == nil || !slices.Contains(auditNames(auditPartitions(t, pool)), "audit_log_p0") {
		t.Errorf("round: %v; want an error and audit_log_p0 kept", err)
	}
	// Once published (the cursor past it), it goes.
	exec(t, pool, `UPDATE audit_relay SET commit_seq = (SELECT max(commit_seq) FROM audit_commits), seq = (SELECT max(seq) FROM audit_log)`)
	if rep := run(t, cfg, start.Add(3*day+time.Hour)); !slices.Contains(rep.AuditDropped, "audit_log_p0") {
		t.Errorf("once published: %+v, want audit_log_p0 dropped", rep)
	}
}

// audit_commits loses the rows of transactions that are published and
// none of whose audit_log rows are left, and keeps the others: one with a
// row in a later partition, the relay's position, and one not published.
func TestAuditCommitsPruned(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	const day = 24 * time.Hour
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: &keyProducer{}}
	start := t0(t, pool)
	write := func(at time.Time) {
		t.Helper()
		exec(t, pool, `INSERT INTO audit_log (audit_id, source, event_id, action, actor, instance, at)
VALUES (gen_random_uuid(), 's', 'e', 'PROCESSED', 'consumer', 'test', $1)`, at)
	}
	write(start.Add(-time.Hour)) // commit 1: its row goes with audit_log_p0
	write(start.Add(time.Hour))  // commit 2: its row stays
	write(start.Add(-time.Hour)) // commit 3: the relay's position
	exec(t, pool, `UPDATE audit_relay SET commit_seq = 3, seq = (SELECT max(seq) FROM audit_log)`)
	write(start.Add(time.Hour)) // commit 4: not published
	rep := run(t, cfg, start.Add(3*day+time.Hour))
	if !slices.Contains(rep.AuditDropped, "audit_log_p0") || rep.CommitsPruned != 1 {
		t.Errorf("round %+v, want audit_log_p0 dropped and one commit pruned", rep)
	}
	rows, err := pool.Query(ctx, `SELECT commit_seq FROM audit_commits ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []int64{2, 3, 4}) {
		t.Errorf("audit_commits holds %v, want 2, 3 and 4", left)
	}
}

// A round spends at most TombstoneBudget on tombstones (at least a batch):
// past it the partition stays, where the pass stands is kept, and the next
// round goes on from there. Every key gets its tombstone once, and the
// partition goes with the round that writes the last.
func TestAuditTombstonesGoOnNextRound(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	producer, tp := auditProducer(t)
	const day = 24 * time.Hour
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: producer, AuditTopic: tp.Audit,
		TombstoneBatch: 2, TombstoneBudget: time.Nanosecond}
	start := t0(t, pool)
	want := []string{"req-1", "req-2"}
	for _, e := range []string{"a", "b", "c", "d", "e"} {
		insertAudit(t, pool, e, "", start.Add(-time.Hour))
		want = append(want, "s/"+e)
	}
	insertAudit(t, pool, "", "req-1", start.Add(-time.Hour))
	insertAudit(t, pool, "", "req-2", start.Add(-time.Hour))
	rounds, total := 0, 0
	for {
		rounds++
		if rounds > 20 {
			t.Fatal("audit_log_p0 is not dropped after 20 rounds")
		}
		rep := run(t, cfg, start.Add(3*day+time.Hour))
		total += rep.Tombstones
		if slices.Contains(rep.AuditDropped, "audit_log_p0") {
			break
		}
		if rep.AuditUnfinished != "audit_log_p0" || !slices.Contains(auditNames(auditPartitions(t, pool)), "audit_log_p0") {
			t.Fatalf("round %d: %+v, want audit_log_p0 kept and unfinished", rounds, rep)
		}
	}
	// Event keys two a round (a, b | c, d | e), the request ids in the
	// last: four rounds.
	if rounds != 4 || total != len(want) {
		t.Errorf("%d rounds, %d tombstones; want 4 rounds and %d", rounds, total, len(want))
	}
	sort.Strings(want)
	if got := tombstoneKeys(t, testenv.Kafka(t), tp.Audit, len(want)); !slices.Equal(got, want) {
		t.Errorf("tombstones %q, want %q", got, want)
	}
	var left int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_tombstone_progress`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d progress rows left (%v), want none", left, err)
	}
}

// TestAheadOnlyMakesPartitionsAndDropsNothing: a consumer whose drops are
// left to a cron job (consume --retention-job=false) still makes
// audit_log's partitions ahead, so its writes never depend on that job,
// and drops nothing: neither an expired audit_log partition nor an events
// bucket, and no bucket opens.
func TestAheadOnlyMakesPartitionsAndDropsNothing(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	const day = 24 * time.Hour
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, AheadOnly: true}
	start := t0(t, pool)
	insertAudit(t, pool, "kept", "", start.Add(-time.Hour))
	before := auditNames(auditPartitions(t, pool))
	rep := run(t, cfg, start.Add(30*day))
	after := auditNames(auditPartitions(t, pool))
	if len(rep.AuditCreated) == 0 || len(after) != len(before)+len(rep.AuditCreated) || after[0] != "audit_log_p0" {
		t.Errorf("30 days on: created %v, partitions %v -> %v; want partitions made ahead and none dropped", rep.AuditCreated, before, after)
	}
	last := auditPartitions(t, pool)
	if hi := *last[len(last)-1].hi; hi.Before(start.Add(31 * day)) {
		t.Errorf("the last partition ends %s, want at least a whole period after %s", hi, start.Add(30*day))
	}
	if rep.Opened || len(rep.Dropped) != 0 || len(rep.AuditDropped) != 0 {
		t.Errorf("report %+v: want no bucket opened and nothing dropped", rep)
	}
}

// keyProducer acknowledges every record and keeps its key.
type keyProducer struct {
	mu   sync.Mutex
	keys []string
}

func (p *keyProducer) ProduceSync(_ context.Context, recs ...*kgo.Record) kgo.ProduceResults {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(kgo.ProduceResults, len(recs))
	for i, r := range recs {
		p.keys = append(p.keys, string(r.Key))
		out[i] = kgo.ProduceResult{Record: r}
	}
	return out
}

// TestRejectionOfAKnownSourceIsTombstonedByItsRequestID: a receiver's
// REJECTED record names its source and no event id. The event keys' pass
// once read it (a row comparison of ('s', NULL) with (”, ”) holds) and
// failed to scan the NULL, every round: the partition was never dropped.
// Its key is its request id. A record about no event and no request (a
// customer drained with nothing left) is tombstoned by its audit id, its
// key (wire.AuditRecord.Key); it once had the key "", never tombstoned.
func TestRejectionOfAKnownSourceIsTombstonedByItsRequestID(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	const day = 24 * time.Hour
	p := &keyProducer{}
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: p}
	start := t0(t, pool)
	insertAudit(t, pool, "evt", "", start.Add(-time.Hour))
	exec(t, pool, `INSERT INTO audit_log (audit_id, source, event_id, request_id, action, actor, instance, at, xid)
VALUES (gen_random_uuid(), 's', NULL, 'req-rejected', 'REJECTED', 'ingest', 'test', $1, NULL)`, start.Add(-time.Hour))
	// A customer drained with nothing left: no event, no request; its key
	// is its audit id.
	const drained = "0194f3a0-0000-7000-8000-00000000d0e0"
	exec(t, pool, `INSERT INTO audit_log (audit_id, source, customer_id, action, reason, actor, instance, at, xid)
VALUES ($1, 's', 'c', 'UNPARKED', 'drained', 'consumer', 'test', $2, NULL)`, drained, start.Add(-time.Hour))
	rep := run(t, cfg, start.Add(3*day+time.Hour))
	if !slices.Contains(rep.AuditDropped, "audit_log_p0") {
		t.Errorf("dropped %v, want audit_log_p0", rep.AuditDropped)
	}
	sort.Strings(p.keys)
	if want := []string{drained, "req-rejected", "s/evt"}; !slices.Equal(p.keys, want) {
		t.Errorf("tombstones %v, want %v", p.keys, want)
	}
}

// TestWriterOpenAcrossTheDropKeepsItsRow: a transaction writing into an
// expired partition (a consumer's travelling decision from a backlog
// older than a short audit retention) while a round drops it. The round
// once checked for unpublished rows, wrote tombstones and detached — the
// detach waiting for the writer, which committed — and dropped the row
// unpublished, without its tombstone. Now the round first closes the
// partition to writers, waiting for them (and failing, to try again,
// when one stays open); a committed row not yet published keeps the
// partition until the relay has published it.
func TestWriterOpenAcrossTheDropKeepsItsRow(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	const day = 24 * time.Hour
	start := t0(t, pool)
	insertAudit(t, pool, "published", "", start.Add(-time.Hour))
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO audit_log (audit_id, source, event_id, action, actor, instance, at)
VALUES (gen_random_uuid(), 's', 'late', 'ACCEPTED', 'ingest', 'test', $1)`, start.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	p := &keyProducer{}
	cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: p, DetachTimeout: 30 * time.Second}
	expiry := start.Add(3*day + time.Hour)
	if _, err := retention.Run(ctx, cfg, expiry); err == nil {
		t.Error("a round while a writer of the expired partition is open: no error")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := retention.Run(ctx, cfg, expiry); err == nil {
		t.Error("a round while the partition holds a row the relay has not published: no error")
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE event_id = 'late'`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("the late row: %d (%v), want kept", rows, err)
	}
	if len(p.keys) != 0 {
		t.Errorf("tombstones %v before the partition can go", p.keys)
	}
	// Closed: a write into it is refused, as one no partition takes.
	_, err = pool.Exec(ctx, `INSERT INTO audit_log (audit_id, source, event_id, action, actor, instance, at)
VALUES (gen_random_uuid(), 's', 'later', 'ACCEPTED', 'ingest', 'test', $1)`, start.Add(-3*time.Hour))
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Errorf("a write into the closed partition: %v, want 23514", err)
	}
}

// auditProducer is a Kafka producer on the test broker, closed when the
// test ends, and topics of the test's own.
func auditProducer(t *testing.T) (*kgo.Client, wire.Topics) {
	t.Helper()
	brokers := testenv.Kafka(t)
	tp := testenv.TopicsN(t, brokers, 1)
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	return producer, tp
}

// perKeyTombstones are the keys the rule of "Tombstones" gives for
// audit_log_p0, ending at hi, computed key by key: every event key of its
// rows with no row at or after hi, and the request-id keys.
func perKeyTombstones(t *testing.T, pool *pgxpool.Pool, hi time.Time) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT DISTINCT p.source || '/' || p.event_id FROM audit_log_p0 p
WHERE p.source IS NOT NULL AND p.event_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM audit_log l WHERE l.source = p.source AND l.event_id = p.event_id AND l.at >= $1)
UNION
SELECT CASE WHEN event_id IS NOT NULL THEN '/' || event_id WHEN request_id <> '' THEN request_id ELSE audit_id::text END
FROM audit_log_p0 WHERE event_id IS NULL OR source IS NULL
ORDER BY 1`, hi)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSetBasedTombstonesAreThePerKeyRule: the event keys' pass answers
// "no later row" for a page of keys at once, from range scans of the later
// partitions over the page's range. On a mix of keys — with and without
// later rows (in the next partition or one further on), in several
// sources, later rows at the first and last key of a page and just
// outside it, later keys between a page's that the expiring partition
// does not have, rows with a source and no event id, request ids — and
// at every page size from a key a page to all of them in one, its
// tombstones are exactly those of the per-key rule.
func TestSetBasedTombstonesAreThePerKeyRule(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	for _, batch := range []int{1, 2, 3, 4, 5, 7, 1000} {
		t.Run(fmt.Sprint(batch), func(t *testing.T) {
			t.Parallel()
			pool := testenv.PostgresPool(t)
			start := t0(t, pool)
			old, next, further := start.Add(-time.Hour), start.Add(time.Hour), start.Add(8*day)
			write := func(source, eventID, requestID string, at time.Time) {
				t.Helper()
				exec(t, pool, `INSERT INTO audit_log (audit_id, source, event_id, request_id, action, actor, instance, at, xid)
VALUES (gen_random_uuid(), NULLIF($1, ''), NULLIF($2, ''), NULLIF($3, ''), 'ACCEPTED', 'ingest', 'test', $4, NULL)`, source, eventID, requestID, at)
			}
			for _, s := range []string{"a", "b", "c"} {
				for i := range 9 {
					id := fmt.Sprintf("e%d", i)
					write(s, id, "", old)
					if i%3 == 0 {
						write(s, id, "", old.Add(-time.Minute)) // a key of two rows
					}
					switch {
					case s == "b" && i%2 == 0:
						write(s, id, "", next)
					case s == "c" && i%4 == 1:
						write(s, id, "", further)
					}
				}
				// Later keys the expiring partition does not have: before,
				// between and after its keys.
				write(s, "d", "", next)
				write(s, "e4x", "", further)
				write(s, "z", "", next)
				write(s, "", "req-later-"+s, next) // a source, no event id
			}
			write("a", "e0", "", further) // the very first key
			write("c", "e8", "", next)    // the very last key
			write("bb", "e1", "", next)   // a source between two of the partition's
			write("a", "", "req-rejected", old)
			write("", "", "req-gone", old)
			write("", "e-no-source", "", old)
			want := perKeyTombstones(t, pool, start)
			if len(want) < 20 || slices.Contains(want, "a/e0") || slices.Contains(want, "b/e0") || !slices.Contains(want, "b/e1") {
				t.Fatalf("the per-key rule gives %q: the mix is not what the test means", want)
			}
			p := &keyProducer{}
			cfg := retention.Config{Pool: pool, AuditRetention: 3 * day, Tombstones: p, TombstoneBatch: batch, TombstoneBudget: -1}
			if rep := run(t, cfg, start.Add(3*day+time.Hour)); !slices.Contains(rep.AuditDropped, "audit_log_p0") {
				t.Fatalf("round %+v, want audit_log_p0 dropped", rep)
			}
			got := slices.Clone(p.keys)
			sort.Strings(got)
			if got = slices.Compact(got); !slices.Equal(got, want) {
				t.Errorf("tombstones %q\nthe per-key rule: %q", got, want)
			}
			if len(p.keys) != len(want) {
				t.Errorf("%d tombstones written for %d keys", len(p.keys), len(want))
			}
		})
	}
}

package retention

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
)

// The audit half (docs/design.md, "Retention", "Audit log"): audit_log is
// partitioned by range of at (migration 10), in partitions of AuditPeriod
// aligned to UTC midnight and named audit_log_pYYYYMMDD by their lower
// bound (audit_log_p0: everything before the migration). A round keeps a
// whole period of partitions ahead of now and drops each partition whose
// upper bound is older than AuditRetention, after tombstones for the keys
// of its rows that have no row in a later partition. Nothing in audit_log
// is unfinished, so nothing moves; but a partition that still holds rows
// the relay has not published stays until it has.

// DefaultAuditRetention is Config.AuditRetention's default.
const DefaultAuditRetention = 90 * 24 * time.Hour

// AuditPeriodFor is the default AuditPeriod of an audit retention: a week,
// or half the retention in whole days if that is less, at least a day.
// Every look-up of audit_log that at does not bound probes each
// partition's index (the relay's by xid for each commit, the signed-digest
// replay check, an event's trail), so a few long partitions beat daily
// ones: a week keeps 13 to 14 for 90 days. The price is that rows stay up
// to a period longer than the retention.
func AuditPeriodFor(retention time.Duration) time.Duration {
	const day = 24 * time.Hour
	return min(7*day, max(day, retention/2/day*day))
}

// DefaultTombstoneBatch is Config.TombstoneBatch's default.
const DefaultTombstoneBatch = 5000

// DefaultTombstoneBudget is Config.TombstoneBudget's default: half the
// interval of the consumers' rounds.
const DefaultTombstoneBudget = 5 * time.Minute

// Producer writes the tombstones: a client with acks=all
// (internal/kafka's NewProducer).
type Producer interface {
	ProduceSync(context.Context, ...*kgo.Record) kgo.ProduceResults
}

// auditPartition is an attached partition of audit_log and its bounds
// (lo is the zero time for audit_log_p0's MINVALUE).
type auditPartition struct {
	name    string
	lo, hi  time.Time
	pending bool // a detach began and did not finish
}

func (j job) auditPartitions(ctx context.Context) ([]auditPartition, error) {
	rows, err := j.conn.Query(ctx, `SELECT c.relname, i.inhdetachpending,
       substring(b FROM 'FROM \(''([^'']+)''\)')::timestamptz, substring(b FROM 'TO \(''([^'']+)''\)')::timestamptz
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid, pg_get_expr(c.relpartbound, c.oid) b
WHERE i.inhparent = 'audit_log'::regclass ORDER BY 4`)
	if err != nil {
		return nil, err
	}
	var out []auditPartition
	var p auditPartition
	var lo *time.Time
	_, err = pgx.ForEachRow(rows, []any{&p.name, &p.pending, &lo, &p.hi}, func() error {
		p.lo = time.Time{}
		if lo != nil {
			p.lo = *lo
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

func auditPartitionName(lo time.Time) string { return "audit_log_p" + lo.UTC().Format("20060102") }

// auditAhead creates partitions after the last one until one ends at
// least a whole AuditPeriod after now: a writer never finds no partition
// for its at while rounds run at least every AuditPeriod (attachNew).
func (j job) auditAhead(ctx context.Context) (created []string, err error) {
	parts, err := j.auditPartitions(ctx)
	if err != nil {
		return nil, err
	}
	var end time.Time
	if len(parts) > 0 {
		end = parts[len(parts)-1].hi
	} else {
		end = j.now.UTC().Truncate(24 * time.Hour)
	}
	for end.Before(j.now.Add(j.cfg.AuditPeriod)) {
		lo, hi := end, end.Add(j.cfg.AuditPeriod)
		bound := fmt.Sprintf(`FROM ('%s') TO ('%s')`, lo.UTC().Format(time.RFC3339), hi.UTC().Format(time.RFC3339))
		if err := j.attachNew(ctx, "audit_log", auditPartitionName(lo), bound); err != nil {
			return created, fmt.Errorf("create the audit_log partition from %s: %w", lo.UTC().Format(time.DateOnly), err)
		}
		created = append(created, auditPartitionName(lo))
		j.cfg.Logger.Info("retention: created an audit_log partition", "partition", auditPartitionName(lo), "until", hi)
		end = hi
	}
	return created, nil
}

// auditFinish completes what an earlier round began and did not finish: a
// detach left pending (its tombstones were written before it began), and
// the drop of a partition detached already.
func (j job) auditFinish(ctx context.Context) (dropped []string, err error) {
	parts, err := j.auditPartitions(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, p := range parts {
		if p.pending {
			errs = append(errs, j.detach(ctx, `ALTER TABLE audit_log DETACH PARTITION `+pgx.Identifier{p.name}.Sanitize()+` FINALIZE`))
		}
	}
	// A table a round marked to drop, detached and did not drop (a table
	// an operator detached to keep has no such mark).
	rows, err := j.conn.Query(ctx, `SELECT c.relname FROM pg_class c
WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relname LIKE 'audit\_log\_p%' AND pg_table_is_visible(c.oid)
  AND obj_description(c.oid, 'pg_class') = $1`, dropMark)
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	detached, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	for _, name := range detached {
		if err := j.dropMarked(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		dropped = append(dropped, name)
		j.cfg.Logger.Info("retention: dropped an audit_log partition", "partition", name)
	}
	return dropped, errors.Join(errs...)
}

// dropMark is the comment on a partition whose tombstones are written
// and which is being detached to be dropped.
const dropMark = "hookstream retention: tombstones written, to be dropped"

// auditExpired are the attached partitions whose upper bound is older
// than AuditRetention, oldest first.
func (j job) auditExpired(ctx context.Context) ([]auditPartition, error) {
	parts, err := j.auditPartitions(ctx)
	if err != nil {
		return nil, err
	}
	var out []auditPartition
	for _, p := range parts {
		if !p.pending && !p.hi.After(j.now.Add(-j.cfg.AuditRetention)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// auditDrop writes the tombstones of p, then detaches and drops it. A
// step that fails leaves p attached (or its detach pending), and the next
// round does it again: tombstones written twice are one tombstone to a
// reader.
func (j job) auditDrop(ctx context.Context, p auditPartition, started time.Time) (tombstones int, err error) {
	name := pgx.Identifier{p.name}.Sanitize()
	if err := j.close(ctx, p.name); err != nil {
		return 0, fmt.Errorf("close %s to writers: %w", p.name, err)
	}
	var unpublished bool
	if err := j.conn.QueryRow(ctx, `SELECT EXISTS (
  SELECT 1 FROM audit_relay r JOIN audit_commits c ON c.commit_seq >= r.commit_seq
  WHERE EXISTS (SELECT 1 FROM `+name+` a WHERE a.xid = c.xid AND (c.commit_seq > r.commit_seq OR a.seq > r.seq)))`).Scan(&unpublished); err != nil {
		return 0, err
	}
	if unpublished {
		return 0, fmt.Errorf("%s holds rows the audit relay has not published yet: kept until it has", p.name)
	}
	if j.cfg.Tombstones == nil {
		return 0, fmt.Errorf("%s is due to be dropped, and this process has no Kafka producer for its tombstones (kafka-brokers)", p.name)
	}
	if tombstones, err = j.tombstones(ctx, p, started); err != nil {
		return tombstones, fmt.Errorf("tombstones of %s: %w", p.name, err)
	}
	if _, err := j.conn.Exec(ctx, `COMMENT ON TABLE `+name+` IS '`+dropMark+`'`); err != nil {
		return tombstones, err
	}
	// CONCURRENTLY: a plain detach would lock audit_log against readers.
	if err := j.detach(ctx, `ALTER TABLE audit_log DETACH PARTITION `+name+` CONCURRENTLY`); err != nil {
		return tombstones, fmt.Errorf("detach %s: %w", p.name, err)
	}
	return tombstones, j.dropMarked(ctx, p.name)
}

// closedConstraint is the name of the CHECK (false) that closes an
// expired partition to writers.
const closedConstraint = "audit_log_expired"

// close closes partition name to writers before anything is read from it
// for its drop: a CHECK (false), NOT VALID (nothing is scanned), added
// under a short lock_timeout, so that it waits for the transactions
// writing into it (a round that times out tries again at the next). A
// writer that committed into it after the check for unpublished rows, or
// after the tombstone pass went past its key, would otherwise be dropped
// unpublished and without its tombstone. Once closed, a write routed
// there is refused with 23514, which the consumer answers by writing at
// its own time and the sink by quarantining: the partition is older than
// the retention, so its rows are going anyway.
func (j job) close(ctx context.Context, name string) error {
	var closed bool
	if err := j.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)`,
		name, closedConstraint).Scan(&closed); err != nil || closed {
		return err
	}
	tx, err := j.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+exclusiveLockTimeout+`'`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE `+pgx.Identifier{name}.Sanitize()+` ADD CONSTRAINT `+closedConstraint+` CHECK (false) NOT VALID`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// dropMarked drops a partition detached after its tombstones, and the
// position of its tombstone pass.
func (j job) dropMarked(ctx context.Context, name string) error {
	if _, err := j.conn.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
		return err
	}
	_, err := j.conn.Exec(ctx, `DELETE FROM audit_tombstone_progress WHERE partition_name = $1`, name)
	return err
}

// errBudget stops a tombstone pass that has spent the round's budget: the
// partition stays, and the next round goes on where this one stopped.
var errBudget = errors.New("the round's tombstone budget is spent")

// tombstones writes a tombstone for the key (wire.AuditRecord.Key) of
// every row of p that has no row in a later partition, a batch at a time,
// each acknowledged before the next is read: the keys of an event
// (source/event_id) in the order of p's index on them, a page at a time,
// each page's keys answered at once by one range scan of each later
// partition's index over the page's range (eventKeys); then the keys of
// records about no event (the request id), read by ranges of p's pages. A
// request id is the server's id of one request, whose records are written
// during it, so no later partition is searched for one (there is no index
// to search it by). Where the pass stands is kept in
// audit_tombstone_progress after every acknowledged batch; past
// TombstoneBudget it returns errBudget and the next round resumes from
// there (a batch whose position was not kept is written again: the same
// tombstones).
func (j job) tombstones(ctx context.Context, p auditPartition, started time.Time) (int, error) {
	t := &tombstonePass{j: j, p: p, name: pgx.Identifier{p.name}.Sanitize(), started: started, page: -1}
	err := j.conn.QueryRow(ctx, `SELECT source, event_id, next_page, done FROM audit_tombstone_progress WHERE partition_name = $1`, p.name).Scan(&t.src, &t.id, &t.page, &t.done)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return 0, err
	case t.done:
		return 0, nil
	}
	parts, err := j.auditPartitions(ctx)
	if err != nil {
		return 0, err
	}
	// Rounds alone make partitions, and this one holds their lock: the
	// later partitions stay these while the pass runs.
	for _, q := range parts {
		if !q.pending && !q.lo.Before(p.hi) {
			t.later = append(t.later, q.name)
		}
	}
	if err := t.eventKeys(ctx); err != nil {
		return t.written, err
	}
	if err := t.requestIDs(ctx); err != nil {
		return t.written, err
	}
	t.done = true
	return t.written, t.save(ctx)
}

// tombstonePass is where a partition's tombstone pass stands: the last
// event key acknowledged (src, id), then the next page of the request-id
// pass (page; -1 while the event keys' pass runs).
type tombstonePass struct {
	j       job
	p       auditPartition
	name    string // p's, quoted
	started time.Time
	// Every source and event id in the table is non-empty (the writers
	// store an empty one as NULL), so ('', '') is before the first.
	src, id string
	page    int64
	done    bool
	written int
	later   []string // the partitions after p, not being detached
}

// save keeps where the pass stands in audit_tombstone_progress.
func (t *tombstonePass) save(ctx context.Context) error {
	_, err := t.j.conn.Exec(ctx, `INSERT INTO audit_tombstone_progress (partition_name, source, event_id, next_page, done)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (partition_name) DO UPDATE SET source = EXCLUDED.source, event_id = EXCLUDED.event_id,
  next_page = EXCLUDED.next_page, done = EXCLUDED.done`, t.p.name, t.src, t.id, t.page, t.done)
	return err
}

// spent reports whether the round's tombstone budget is spent.
func (t *tombstonePass) spent() bool {
	return t.j.cfg.TombstoneBudget > 0 && time.Since(t.started) >= t.j.cfg.TombstoneBudget
}

// write writes keys' tombstones, a batch at a time.
func (t *tombstonePass) write(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), t.j.cfg.TombstoneBatch)
		if err := audit.Tombstones(ctx, t.j.cfg.Tombstones, t.j.cfg.AuditTopic, keys[:n]); err != nil {
			return err
		}
		t.written, keys = t.written+n, keys[n:]
	}
	return nil
}

// eventKeys is the first pass: the keys of events (source/event_id) in
// the order of p's index on them, each without a row in a later
// partition, a page (TombstoneBatch keys) at a time. Rows without a
// source or an event id are the second pass's: a row comparison is
// decided by its first unequal pair, so ('s', NULL) > (”, ”) holds, and
// a rejection (a source, no event id) would otherwise come here.
func (t *tombstonePass) eventKeys(ctx context.Context) error {
	batch := t.j.cfg.TombstoneBatch
	q := noLaterRowSQL(t.name, t.later)
	for t.page < 0 {
		pg, err := readPage(ctx, t.j.conn, q, t.src, t.id, batch)
		if err != nil {
			return err
		}
		if err := t.write(ctx, pg.gone); err != nil {
			return err
		}
		t.src, t.id = pg.src, pg.id
		if pg.n < batch {
			t.page = 0
		}
		if err := t.save(ctx); err != nil {
			return err
		}
		if t.spent() {
			return errBudget
		}
	}
	return nil
}

// page is what noLaterRowSQL finds of a page: how many keys it has, its
// last key, and its keys without a later row.
type page struct {
	n       int
	src, id string
	gone    []string
}

// readPage runs q (noLaterRowSQL) for the page after (src, id), in a
// transaction of its own with JIT off: the planner's estimate of ranges
// whose bounds it cannot see (the page's own last key) is high enough for
// it to compile the plan, which cost more than running it (on the
// measured pages, about 100 ms of 150).
func readPage(ctx context.Context, conn *pgx.Conn, q, src, id string, batch int) (page, error) {
	var pg page
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, q, src, id, batch).Scan(&pg.n, &pg.src, &pg.id, &pg.gone)
	})
	return pg, err
}

// noLaterRowSQL is the statement of eventKeys' page after ($1, $2) of
// partition name ($3 keys at most), whose later partitions are later: the
// page's count, its last key (($1, $2) if it is empty), and the keys of
// the page without a row in a later partition. The test is set-based, not
// a look-up per key (docs/design.md, "A round's budget"): each later
// partition's (source, event_id, seq) index is read once, over the page's
// range (pageRange), each key once (DISTINCT: a key's rows are adjacent
// in the index); the keys read are kept if the page has them (a hash of
// the page's keys: the page is small, the range large), and the page is
// anti-joined to those. OFFSET 0 forces the shape: the planner does not
// push a join's condition into a subquery it keeps, so it cannot make the
// join one index descent per key of the page and later partition, the
// cost this replaces (TestNoLaterRowReadsEachLaterPartitionOnce).
func noLaterRowSQL(name string, later []string) string {
	var ranges []string
	for _, l := range later {
		for _, r := range pageRange {
			ranges = append(ranges, `(SELECT DISTINCT source, event_id FROM `+pgx.Identifier{l}.Sanitize()+` WHERE `+r+`)`)
		}
	}
	if len(ranges) == 0 {
		ranges = append(ranges, `SELECT NULL::text AS source, NULL::text AS event_id WHERE false`)
	}
	return `WITH k AS MATERIALIZED (
  SELECT DISTINCT source, event_id FROM ` + name + `
  WHERE (source, event_id) > ($1, $2) AND source IS NOT NULL AND event_id IS NOT NULL
  ORDER BY source, event_id LIMIT $3),
e AS MATERIALIZED (SELECT source, event_id FROM k ORDER BY source DESC, event_id DESC LIMIT 1),
m AS MATERIALIZED (SELECT l.source, l.event_id FROM (` + strings.Join(ranges, "\n  UNION ALL\n  ") + `
  OFFSET 0) l
  WHERE EXISTS (SELECT 1 FROM k WHERE k.source = l.source AND k.event_id = l.event_id))
SELECT (SELECT count(*) FROM k)::int, coalesce(e.source, $1), coalesce(e.event_id, $2),
  array(SELECT k.source || '/' || k.event_id FROM k
        WHERE NOT EXISTS (SELECT 1 FROM m WHERE m.source = k.source AND m.event_id = k.event_id)
        ORDER BY k.source, k.event_id)
FROM (SELECT 1) one LEFT JOIN e ON true`
}

// pageRange is the range of a page, after ($1, $2) up to its last key
// (e), as index conditions that end the scan where the range ends. A row
// comparison does not: PostgreSQL 15 ends the scan on its first column
// alone, reading on through the last source's later keys (a page's scan
// 7 times slower, measured). So the range is one source's ($1) from $2 to
// the last event id, or, when the page ends in a later source, the rest
// of $1's, the sources between, and the last source's up to the last
// event id. Which of these apply is decided by index conditions on
// source too ($1 is never after e's source), not by a filter: the
// index's preprocessing finds a contradiction before reading anything,
// and no node stands between the scan and the rows.
var pageRange = []string{
	`source = $1 AND source >= (SELECT source FROM e) AND event_id > $2 AND event_id <= (SELECT event_id FROM e)`,
	`source = $1 AND source < (SELECT source FROM e) AND event_id > $2`,
	`source > $1 AND source < (SELECT source FROM e)`,
	`source = (SELECT source FROM e) AND source > $1 AND event_id <= (SELECT event_id FROM e)`,
}

// keyOfNoEventSQL is wire.AuditRecord.Key of an audit_log row that is not
// about an event of a source: "/" + event_id without a source, else the
// request id, else the row's own audit id.
const keyOfNoEventSQL = `CASE WHEN event_id IS NOT NULL THEN '/' || event_id
  ELSE coalesce(nullif(request_id, ''), audit_id::text) END`

// requestIDs is the second pass: records about no event, whose key is the
// request id (or, with none, the record's audit id), and rows with an
// event id but no source ("/" + event_id), by ranges of p's pages.
func (t *tombstonePass) requestIDs(ctx context.Context) error {
	var pages int64
	if err := t.j.conn.QueryRow(ctx, `SELECT pg_relation_size($1::regclass) / current_setting('block_size')::bigint`, t.p.name).Scan(&pages); err != nil {
		return err
	}
	const step = 1024 // pages: 8 MiB
	for t.page < pages {
		rows, err := t.j.conn.Query(ctx, `SELECT DISTINCT `+keyOfNoEventSQL+` FROM `+t.name+`
WHERE ctid >= format('(%s,0)', $1::bigint)::tid AND ctid < format('(%s,0)', $2::bigint)::tid
  AND (event_id IS NULL OR source IS NULL)`, t.page, t.page+step)
		if err != nil {
			return err
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if err := t.write(ctx, keys); err != nil {
			return err
		}
		t.page += step
		if err := t.save(ctx); err != nil {
			return err
		}
		if t.page < pages && t.spent() {
			return errBudget
		}
	}
	return nil
}

// auditRound drops the expired partitions of audit_log (partitions ahead
// are made at the round's start, auditAhead).
func (j job) auditRound(ctx context.Context, rep *Report) error {
	dropped, err := j.auditFinish(ctx)
	rep.AuditDropped = append(rep.AuditDropped, dropped...)
	if err != nil {
		return err
	}
	old, err := j.auditExpired(ctx)
	if err != nil {
		return err
	}
	started := time.Now()
	for _, p := range old {
		n, err := j.auditDrop(ctx, p, started)
		rep.Tombstones += n
		if errors.Is(err, errBudget) {
			// The next round goes on; pruning can wait for it.
			rep.AuditUnfinished = p.name
			j.cfg.Logger.Info("retention: the tombstones of an audit_log partition go on at the next round", "partition", p.name, "tombstones", n)
			return nil
		}
		if err != nil {
			return err
		}
		rep.AuditDropped = append(rep.AuditDropped, p.name)
		j.cfg.Logger.Info("retention: dropped an audit_log partition", "partition", p.name, "until", p.hi, "tombstones", n)
	}
	n, err := j.pruneCommits(ctx)
	rep.CommitsPruned = n
	return err
}

// pruneCommitsBatch is how many audit_commits rows one statement of
// pruneCommits deletes.
const pruneCommitsBatch = 10000

// pruneCommits deletes the rows of audit_commits (one per transaction that
// wrote audit_log rows, migration 5) that nothing reads any more: behind
// the relay's position (published; the relay reads from its position on)
// and with a transaction id below every id left in audit_log, so none of
// their rows remain (verify and the overview join audit_commits to rows
// that exist). A transaction still running is not in audit_commits yet,
// and commits after the relay's position. Ids only grow, so the oldest id
// left is found from the (xid, seq) index of each partition.
func (j job) pruneCommits(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := j.conn.Exec(ctx, `DELETE FROM audit_commits WHERE commit_seq IN (
  SELECT c.commit_seq FROM audit_commits c, audit_relay r
  WHERE c.commit_seq < r.commit_seq
    AND c.xid < coalesce((SELECT min(xid) FROM audit_log WHERE xid IS NOT NULL), '18446744073709551615'::xid8)
  LIMIT $1)`, pruneCommitsBatch)
		if err != nil {
			return total, fmt.Errorf("prune audit_commits: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneCommitsBatch {
			return total, nil
		}
	}
}

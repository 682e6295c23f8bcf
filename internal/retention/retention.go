package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/internal/wire"
)

// Config is what a round of Run needs.
type Config struct {
	Pool *pgxpool.Pool
	// Retention is how long events stay after their bucket stopped being
	// the current one: the dedupe window (docs/design.md, "Retention").
	// Default 14 days, longer than any provider's retries (Stripe's 3
	// days, Shopify's 48 hours).
	Retention time.Duration
	// Period is how long a bucket stays the current one. Default half the
	// retention in whole days, at least a day: every look-up of an event
	// probes each live bucket's partition (about 2.5 µs per partition and
	// key, measured in BENCHMARKS.md), so a handful of long buckets beat
	// a retention's worth of daily ones; the price is that rows stay up
	// to a Period longer than the retention.
	Period time.Duration
	// DetachTimeout bounds how long a detach waits for the transactions
	// that use events (DETACH ... CONCURRENTLY waits for all of them). One
	// left open would otherwise hold the round, and the rounds' turn, for
	// as long: the detach stays pending and the next round finishes it.
	// Default a minute.
	DetachTimeout time.Duration
	// AuditRetention is how long audit_log rows are kept: a partition of
	// audit_log is dropped once its upper bound is older than that.
	// Default 90 days (DefaultAuditRetention), at least MinRetention.
	AuditRetention time.Duration
	// AuditPeriod is the span of a new audit_log partition. Default
	// AuditPeriodFor(AuditRetention).
	AuditPeriod time.Duration
	// Tombstones writes the audit topic's tombstones for the keys of a
	// partition about to be dropped (docs/design.md, "Tombstones"). Nil:
	// a round that has an audit_log partition to drop fails and keeps it.
	Tombstones Producer
	// AuditTopic is where tombstones go; default wire.DefaultAuditTopic.
	AuditTopic string
	// TombstoneBatch is how many keys a round reads, and writes as
	// tombstones, at a time. Default DefaultTombstoneBatch.
	TombstoneBatch int
	// TombstoneBudget bounds the time a round spends writing tombstones
	// (checked after each batch): past it, the round keeps where it
	// stopped (audit_tombstone_progress) and ends, and the next round goes
	// on, so a partition of many keys does not hold the rounds' lock, and
	// the making of partitions ahead, for as long. Default
	// DefaultTombstoneBudget; negative: no bound.
	TombstoneBudget time.Duration
	// AheadOnly makes a round only make audit_log's partitions ahead and
	// drop nothing: what a consumer runs when the drops are left to a cron
	// job (consume --retention-job=false). Writers of audit_log fail once
	// the partitions made ahead run out, so they must not depend on a job
	// someone may forget to schedule; the storage then grows, no more.
	AheadOnly bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is this process's clock, which RunNow compares with the
	// database's (it runs on the database's); default time.Now (tests set
	// a clock of their own).
	Now func() time.Time
}

// DefaultRetention is Config.Retention's default.
const DefaultRetention = 14 * 24 * time.Hour

// MinRetention is the shortest Config.Retention: a bucket is a day at least.
const MinRetention = 24 * time.Hour

// PeriodFor is the default Period of a retention.
func PeriodFor(retention time.Duration) time.Duration {
	const day = 24 * time.Hour
	return max(day, retention/2/day*day)
}

// DefaultDetachTimeout is Config.DetachTimeout's default.
const DefaultDetachTimeout = time.Minute

func (c Config) withDefaults() Config {
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Period == 0 {
		c.Period = PeriodFor(c.Retention)
	}
	if c.DetachTimeout == 0 {
		c.DetachTimeout = DefaultDetachTimeout
	}
	if c.AuditRetention == 0 {
		c.AuditRetention = DefaultAuditRetention
	}
	if c.AuditPeriod == 0 {
		c.AuditPeriod = AuditPeriodFor(c.AuditRetention)
	}
	if c.AuditTopic == "" {
		c.AuditTopic = wire.DefaultAuditTopic
	}
	if c.TombstoneBatch <= 0 {
		c.TombstoneBatch = DefaultTombstoneBatch
	}
	if c.TombstoneBudget == 0 {
		c.TombstoneBudget = DefaultTombstoneBudget
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Report is what a round did.
type Report struct {
	// Skipped: another process was running a round.
	Skipped bool
	// Current is the current bucket after the round; Opened says the round
	// made it current.
	Current int
	Opened  bool
	// Dropped are the buckets whose partitions the round dropped, and
	// Moved the unfinished events it moved out of them first.
	Dropped []int
	Moved   int64
	// AuditCreated and AuditDropped are the audit_log partitions the round
	// created and dropped; Tombstones counts the tombstones it wrote.
	AuditCreated []string
	AuditDropped []string
	Tombstones   int
	// AuditUnfinished is the partition whose tombstones the round began
	// or went on with and left for the next round (TombstoneBudget).
	AuditUnfinished string
	// CommitsPruned counts the rows of audit_commits the round deleted:
	// published, and none of their transactions' rows left.
	CommitsPruned int64
}

// maintainerLock is the session advisory lock one round holds, so that
// members of a group and cron jobs can all run rounds and only one runs
// at a time.
const maintainerLock int64 = 0x686f6f6b736d6e74 // "hooksmnt"

// Run does one round of retention as of now: a bucket that has been
// current for a Period gives way to the next one (its partition made
// first), and the partition of every bucket closed
// longer than Retention ago is dropped, its unfinished events (anything
// not PROCESSED) moved into the current bucket first. audit_log gets its
// partitions a whole AuditPeriod ahead (first of all), and loses those
// wholly older than AuditRetention (last, audit.go). Every step can run
// again after a failure; a round another process is running is skipped.
func Run(ctx context.Context, cfg Config, now time.Time) (Report, error) {
	cfg = cfg.withDefaults()
	if cfg.Retention < cfg.Period {
		return Report{}, fmt.Errorf("retention: a retention of %s is shorter than a bucket's period (%s)", cfg.Retention, cfg.Period)
	}
	if cfg.AuditRetention < MinRetention || cfg.AuditPeriod < 24*time.Hour || cfg.AuditPeriod%(24*time.Hour) != 0 {
		return Report{}, fmt.Errorf("retention: an audit retention of %s with partitions of %s: want at least a day, partitions of whole days", cfg.AuditRetention, cfg.AuditPeriod)
	}
	conn, err := cfg.Pool.Acquire(ctx)
	if err != nil {
		return Report{}, err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", maintainerLock).Scan(&got); err != nil || !got {
		return Report{Skipped: err == nil}, err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", maintainerLock)
	}()
	r := job{cfg: cfg, conn: conn.Conn(), now: now}
	rep, err := r.round(ctx)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	return rep, nil
}

// RunNow does one round of retention (Run) as of now: what Loop and
// `hookstream maintain` run. Now is the database's clock, not this
// process's: rounds run in any member of the group and on cron hosts, and
// what a round drops, and when it records a bucket opened, is decided by
// its clock. One process whose clock was ahead (by a year: every events
// bucket but the current one, and every audit_log partition with today's
// rows) dropped what every other clock keeps; one behind recorded the
// buckets it opened as opened earlier, and the bucket before went that
// much before its retention. The database's clock is the one every round
// shares (and the one that stamps the rows). A process clock more than
// maxClockSkew off it is logged.
func RunNow(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	own := cfg.Now()
	var now time.Time
	if err := cfg.Pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		return Report{}, fmt.Errorf("retention: the database's clock: %w", err)
	}
	if skew := own.Sub(now); skew > maxClockSkew || skew < -maxClockSkew {
		cfg.Logger.Warn("retention: this process's clock is off the database's; the round runs on the database's", "ahead", skew)
	}
	return Run(ctx, cfg, now)
}

// maxClockSkew is how far this process's clock may be off the database's
// before RunNow says so (it runs on the database's either way).
const maxClockSkew = time.Minute

type job struct {
	cfg  Config
	conn *pgx.Conn
	now  time.Time
}

func (j job) round(ctx context.Context) (Report, error) {
	var rep Report
	// audit_log's partitions ahead come first: a writer whose at no
	// partition takes fails, and nothing below may hold them up.
	created, err := j.auditAhead(ctx)
	rep.AuditCreated = created
	if err != nil || j.cfg.AheadOnly {
		return rep, err
	}
	cur, opened, err := j.current(ctx)
	if err != nil {
		return rep, err
	}
	// The next bucket's partition is made by the round that opens the
	// bucket, before it does: no insert can miss it, and no empty
	// partition waits meanwhile for every look-up to probe.
	if !j.now.Before(opened.Add(j.cfg.Period)) {
		if err := j.ensurePartition(ctx, cur+1); err != nil {
			return rep, err
		}
		if err := j.open(ctx, cur+1); err != nil {
			return rep, err
		}
		cur, rep.Opened = cur+1, true
	}
	rep.Current = cur
	// Detaches wait for the readers of events, so they come after the
	// opening, which a reader left open must not hold up.
	if err := j.finishDetaches(ctx); err != nil {
		return rep, err
	}
	old, err := j.expired(ctx)
	if err != nil {
		return rep, err
	}
	for _, b := range old {
		n, err := j.drop(ctx, b)
		rep.Moved += n
		if err != nil {
			return rep, err
		}
		rep.Dropped = append(rep.Dropped, b)
		j.cfg.Logger.Info("retention: dropped an events bucket", "bucket", b, "unfinished_moved", n)
	}
	return rep, j.auditRound(ctx, &rep)
}

func (j job) current(ctx context.Context) (bucket int, opened time.Time, err error) {
	err = j.conn.QueryRow(ctx, `SELECT c.bucket, b.opened_at FROM event_clock c JOIN event_buckets b USING (bucket)`).Scan(&bucket, &opened)
	return bucket, opened, err
}

func partitionName(b int) string { return fmt.Sprintf("events_b%d", b) }

// ensurePartition creates bucket b's partition unless it exists: a table
// of its own, attached, which takes a lock that lets readers and writers
// of events go on (CREATE TABLE ... PARTITION OF would not).
func (j job) ensurePartition(ctx context.Context, b int) error {
	var exists bool
	if err := j.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass AND c.relname = $1)`, partitionName(b)).Scan(&exists); err != nil || exists {
		return err
	}
	if err := j.attachNew(ctx, "events", partitionName(b), fmt.Sprintf("IN (%d)", b), fmt.Sprintf("bucket = %d", b)); err != nil {
		return fmt.Errorf("create the partition of bucket %d: %w", b, err)
	}
	return nil
}

// attachNew makes name a new partition of parent FOR VALUES bound, in one
// transaction: a table of its own like parent (a leftover of an earlier
// try dropped first), with checks (the bound, so that attaching scans
// nothing), then attached, which takes a lock that lets readers and
// writers of parent go on (CREATE TABLE ... PARTITION OF would not).
func (j job) attachNew(ctx context.Context, parent, name, bound string, checks ...string) error {
	table := pgx.Identifier{name}.Sanitize()
	qs := []string{
		`DROP TABLE IF EXISTS ` + table,
		`CREATE TABLE ` + table + ` (LIKE ` + parent + ` INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
	}
	for _, c := range checks {
		qs = append(qs, `ALTER TABLE `+table+` ADD CHECK (`+c+`)`)
	}
	qs = append(qs, `ALTER TABLE `+parent+` ATTACH PARTITION `+table+` FOR VALUES `+bound)
	return pgx.BeginFunc(ctx, j.conn, func(tx pgx.Tx) error {
		for _, q := range qs {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// exclusiveLockTimeout bounds the wait for the bucket lock held
// exclusively. Writers queue behind the waiting round, so a writer that
// holds its transaction open (a paused member, until PostgreSQL ends its
// idle transaction) would stall every other one for as long; the round
// gives up instead and the next one tries again.
const exclusiveLockTimeout = "2s"

// lockBuckets takes the bucket lock exclusively until tx ends.
func lockBuckets(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+exclusiveLockTimeout+"'"); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", bucketLock)
	return err
}

// open makes b the current bucket, under the bucket lock held
// exclusively: it waits for every transaction writing events to end, and
// every later one finds b current.
func (j job) open(ctx context.Context, b int) error {
	return pgx.BeginFunc(ctx, j.conn, func(tx pgx.Tx) error {
		if err := lockBuckets(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO event_buckets (bucket, opened_at) VALUES ($1, $2)`, b, j.now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE event_clock SET bucket = $1`, b)
		return err
	})
}

// expired are the buckets closed (their successor opened) longer than
// Retention ago, oldest first.
func (j job) expired(ctx context.Context) ([]int, error) {
	rows, err := j.conn.Query(ctx, `SELECT b.bucket FROM event_buckets b JOIN event_buckets n ON n.bucket = b.bucket + 1
WHERE n.opened_at <= $1 ORDER BY b.bucket`, j.now.Add(-j.cfg.Retention))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// drop moves b's unfinished events into the current bucket and drops b's
// partition. The move holds the bucket lock exclusively, so that no
// transaction reading or writing one of those events sees it move. Every
// writer of events waits meanwhile, so the move finds the unfinished
// events by the status index: "status <> 'PROCESSED'" would read the
// whole day's partition, nearly all of it PROCESSED. The list is every
// status of events' CHECK but PROCESSED: a status added there must be
// added here, or its events are dropped.
func (j job) drop(ctx context.Context, b int) (moved int64, err error) {
	err = pgx.BeginFunc(ctx, j.conn, func(tx pgx.Tx) error {
		if err := lockBuckets(ctx, tx); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE events SET bucket = (SELECT bucket FROM event_clock)
WHERE bucket = $1 AND status IN ('PROCESSING', 'FAILED', 'DEAD', 'PARKED')`, b)
		moved = tag.RowsAffected()
		return err
	})
	if err != nil {
		return moved, fmt.Errorf("move the unfinished events of bucket %d: %w", b, err)
	}
	name := pgx.Identifier{partitionName(b)}.Sanitize()
	var attached bool
	if err := j.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'events'::regclass AND inhrelid = to_regclass($1))`,
		partitionName(b)).Scan(&attached); err != nil {
		return moved, err
	}
	if attached {
		// CONCURRENTLY: a plain detach would lock events against readers.
		if err := j.detach(ctx, `ALTER TABLE events DETACH PARTITION `+name+` CONCURRENTLY`); err != nil {
			return moved, fmt.Errorf("detach the partition of bucket %d: %w", b, err)
		}
	}
	if _, err := j.conn.Exec(ctx, `DROP TABLE IF EXISTS `+name); err != nil {
		return moved, err
	}
	_, err = j.conn.Exec(ctx, `DELETE FROM event_buckets WHERE bucket = $1`, b)
	return moved, err
}

// detach runs a detach statement with its waits bounded by DetachTimeout
// (lock_timeout, which also bounds the wait for the transactions using
// events): one that times out leaves the detach pending.
func (j job) detach(ctx context.Context, q string) error {
	if _, err := j.conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", max(j.cfg.DetachTimeout.Milliseconds(), 1))); err != nil {
		return err
	}
	_, err := j.conn.Exec(ctx, q)
	if _, rerr := j.conn.Exec(context.WithoutCancel(ctx), "RESET lock_timeout"); err == nil {
		err = rerr
	}
	return err
}

// finishDetaches completes a detach an earlier round began and did not
// finish (the connection broke, or it waited DetachTimeout): the
// partition stays pending until then.
func (j job) finishDetaches(ctx context.Context) error {
	rows, err := j.conn.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass AND i.inhdetachpending`)
	if err != nil {
		return err
	}
	pending, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range pending {
		errs = append(errs, j.detach(ctx, `ALTER TABLE events DETACH PARTITION `+pgx.Identifier{name}.Sanitize()+` FINALIZE`))
	}
	return errors.Join(errs...)
}

// Loop runs a round at once and then every interval until ctx ends; a
// round that fails is logged and tried again at the next one. Every
// member of a consumer group runs it; the rounds of one database take
// turns (Run).
func Loop(ctx context.Context, cfg Config, interval time.Duration) error {
	cfg = cfg.withDefaults()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rep, err := RunNow(ctx, cfg)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			cfg.Logger.Warn("retention: the round failed; the next one tries again", "error", err)
		case rep.Opened:
			cfg.Logger.Info("retention: a new events bucket is current", "bucket", rep.Current)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

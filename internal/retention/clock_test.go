package retention_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/retention"
	"github.com/hookstream/hookstream/internal/testenv"
)

// TestRoundOnAClockAheadOfTheDatabaseDropsNothingKept: the rounds of
// Loop and `hookstream maintain` run on the clock of whichever process
// runs them (any member of the group, or a cron host), and what they drop
// is decided by it. A process whose clock is far ahead of the database's
// (a host a year off: a VM resumed with a bad RTC, NTP misconfigured) must
// not drop the events bucket closed a moment ago by the database's clock
// (its PROCESSED events are the dedupe window), nor the audit_log
// partition that holds today's rows, nor write their tombstones.
func TestRoundOnAClockAheadOfTheDatabaseDropsNothingKept(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	producer, tp := auditProducer(t)
	exec(t, pool, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('s', 'done', 'c', 'PROCESSED')`)
	insertAudit(t, pool, "today", "", time.Now())
	// Bucket 0 opened more than a period ago: a round on a right clock
	// opens bucket 1 now, which closes bucket 0 (kept 14 days from now).
	exec(t, pool, `UPDATE event_buckets SET opened_at = opened_at - interval '8 days' WHERE bucket = 0`)
	cfg := retention.Config{Pool: pool, Tombstones: producer, AuditTopic: tp.Audit}
	if rep := run(t, cfg, time.Now()); !rep.Opened || rep.Current != 1 {
		t.Fatalf("the round on a right clock: %+v, want bucket 1 opened", rep)
	}

	ahead := cfg
	ahead.Now = func() time.Time { return time.Now().Add(365 * 24 * time.Hour) }
	rep, err := retention.RunNow(ctx, ahead)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Dropped) != 0 || len(rep.AuditDropped) != 0 || rep.Tombstones != 0 {
		t.Errorf("a round a year ahead of the database: dropped buckets %v, audit_log partitions %v, %d tombstones; want nothing dropped",
			rep.Dropped, rep.AuditDropped, rep.Tombstones)
	}
	if got := buckets(t, pool); got["done"] != 0 || len(got) != 1 {
		t.Errorf("events %v, want s/done kept in bucket 0 (closed a moment ago by the database's clock)", got)
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE event_id = 'today'`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%d audit_log rows of today (%v), want 1", rows, err)
	}
}

// TestRoundOnAClockBehindRecordsTheDatabasesTime: a round on a process
// whose clock is behind the database's (8 days here) that opens a bucket
// records when it opened by the database's clock. It recorded its own,
// 8 days early, and the bucket before, closed by that time, went 8 days
// before its retention at the next round of a right clock.
func TestRoundOnAClockBehindRecordsTheDatabasesTime(t *testing.T) {
	t.Parallel()
	pool := testenv.PostgresPool(t)
	ctx := context.Background()
	exec(t, pool, `UPDATE event_buckets SET opened_at = opened_at - interval '20 days' WHERE bucket = 0`)
	behind := retention.Config{Pool: pool, Now: func() time.Time { return time.Now().Add(-8 * 24 * time.Hour) }}
	rep, err := retention.RunNow(ctx, behind)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Opened || rep.Current != 1 {
		t.Fatalf("the round: %+v, want bucket 1 opened", rep)
	}
	var off time.Duration
	if err := pool.QueryRow(ctx, `SELECT extract(epoch FROM now() - opened_at) * interval '1 second' FROM event_buckets WHERE bucket = 1`).Scan(&off); err != nil {
		t.Fatal(err)
	}
	if off > time.Minute || off < -time.Minute {
		t.Errorf("bucket 1 recorded as opened %v before the database's now, want now", off)
	}
}

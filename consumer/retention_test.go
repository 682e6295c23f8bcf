package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/retention"
	"github.com/hookstream/hookstream/internal/wire"
)

// openBucket1 runs a retention round a period after bucket 0 opened, which
// opens bucket 1, and returns when bucket 0 opened.
func (tb *testBundle) openBucket1() time.Time {
	tb.t.Helper()
	var opened time.Time
	if err := tb.pool.QueryRow(context.Background(), `SELECT opened_at FROM event_buckets WHERE bucket = 0`).Scan(&opened); err != nil {
		tb.t.Fatal(err)
	}
	if rep, err := retention.Run(context.Background(), retention.Config{Pool: tb.pool}, opened.Add(retention.PeriodFor(retention.DefaultRetention))); err != nil || rep.Current != 1 {
		tb.t.Fatalf("open bucket 1: %+v, %v", rep, err)
	}
	return opened
}

// TestDuplicateAcrossBuckets: an event processed while bucket 0 was the
// current one and delivered again after bucket 1 opened (docs/design.md,
// "Retention") is a duplicate: no second row in the new bucket, no second
// handler call; a new event goes into bucket 1.
func TestDuplicateAcrossBuckets(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for i := range 20 {
		tb.produce("generic", "old-"+strconv.Itoa(i), "cus_"+strconv.Itoa(i%4), i)
	}
	tb.flush()
	tb.start(recordingHandler, consumer.RetryPolicy{})
	tb.waitFor(time.Minute, 20, `SELECT count(*) FROM events WHERE status = 'PROCESSED' AND bucket = 0`)

	tb.openBucket1()
	for i := range 20 {
		tb.produce("generic", "old-"+strconv.Itoa(i), "cus_"+strconv.Itoa(i%4), i)
	}
	tb.produce("generic", "new", "cus_0", 99)
	tb.flush()
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'new' AND bucket = 1 AND status = 'PROCESSED'`)
	tb.waitFor(time.Minute, 20, `SELECT count(*) FROM audit_log WHERE action = 'DUPLICATE'`)
	tb.waitFor(time.Second, 21, `SELECT count(*) FROM events`)
	tb.waitFor(time.Second, 21, `SELECT count(*) FROM handled`)
}

// TestParkedCustomerAcrossBuckets: a customer parked behind a DEAD event
// while bucket 0 was current; bucket 1 opens and the customer's next
// events park in it; the replay of the blocker runs it where its row is
// and drains all of them in order, each event one row in its own bucket.
// Then a retention round long after moves nothing (all finished) and
// drops bucket 0 with its rows.
func TestParkedCustomerAcrossBuckets(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var broken sync.Map
	broken.Store("cus_p", true)
	h := goneFor(&broken)
	for seq := range 2 {
		tb.produce("generic", fmt.Sprintf("p-%d", seq), "cus_p", seq)
	}
	tb.flush()
	tb.start(h, consumer.RetryPolicy{MaxAttempts: 1})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'p-0' AND status = 'DEAD' AND bucket = 0`)
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'p-1' AND status = 'PARKED' AND bucket = 0`)

	opened := tb.openBucket1()
	tb.produce("generic", "p-2", "cus_p", 2)
	tb.flush()
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'p-2' AND status = 'PARKED' AND bucket = 1`)

	broken.Delete("cus_p")
	if err := consumer.Replay(context.Background(), consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}, Instance: "test"}, "generic", "p-0", "fixed"); err != nil {
		t.Fatal(err)
	}
	tb.waitFor(time.Minute, 3, `SELECT count(*) FROM events WHERE customer_id = 'cus_p' AND status = 'PROCESSED'`)
	tb.waitFor(time.Second, 3, `SELECT count(*) FROM events`)
	tb.waitFor(time.Second, 2, `SELECT count(*) FROM events WHERE bucket = 0`)
	var order string
	if err := tb.pool.QueryRow(context.Background(), `SELECT string_agg(seq::text, ',' ORDER BY n) FROM handled`).Scan(&order); err != nil || order != "0,1,2" {
		t.Errorf("handled in order %q (%v), want 0,1,2", order, err)
	}

	rep, err := retention.Run(context.Background(), retention.Config{Pool: tb.pool}, opened.Add(retention.PeriodFor(retention.DefaultRetention)+retention.DefaultRetention))
	if err != nil || len(rep.Dropped) != 1 || rep.Moved != 0 {
		t.Fatalf("bucket 0 expired: %+v, %v; want it dropped, nothing moved", rep, err)
	}
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM events WHERE event_id = 'p-2'`)
	tb.waitFor(time.Second, 1, `SELECT count(*) FROM events`)
}

// TestClaimLooksFromTheFloor: the claim probes only the buckets from the
// record's floor (wire.HeaderBucket) on. A record whose floor is above
// the bucket holding its event is taken for a new event — the receiver
// never stamps such a floor (ingest/bucket.go), and this shows the floor
// is what the claim goes by — while the same record without a floor, or
// as a re-drive, finds the event and is a duplicate.
func TestClaimLooksFromTheFloor(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.produce("generic", "f-0", "cus_f", 0)
	tb.flush()
	tb.start(recordingHandler, consumer.RetryPolicy{})
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'f-0' AND bucket = 0`)
	tb.openBucket1()

	// One at a time: copies in one batch are duplicates of each other.
	tb.produceWith("f-0", "cus_f", map[string]string{wire.HeaderBucket: "0"})
	tb.flush()
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM audit_log WHERE event_id = 'f-0' AND action = 'DUPLICATE'`)
	tb.produceWith("f-0", "cus_f", map[string]string{wire.HeaderRedrive: "true", wire.HeaderBucket: "1"})
	tb.flush()
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM audit_log WHERE event_id = 'f-0' AND action = 'DUPLICATE'`)
	tb.produceWith("f-0", "cus_f", map[string]string{wire.HeaderBucket: "1"})
	tb.flush()
	tb.waitFor(time.Minute, 1, `SELECT count(*) FROM events WHERE event_id = 'f-0' AND bucket = 1`)
	tb.waitFor(time.Second, 2, `SELECT count(*) FROM handled`)
	tb.waitFor(time.Second, 2, `SELECT count(*) FROM audit_log WHERE event_id = 'f-0' AND action = 'DUPLICATE'`)
}

// TestWritersReadCommitted: the bucket lock's argument needs each
// statement after the lock to see what committed before it, so the
// consumer's transactions are READ COMMITTED even where the database
// defaults to REPEATABLE READ.
func TestWritersReadCommitted(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var db string
	if err := tb.pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.pool.Exec(context.Background(), `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` SET default_transaction_isolation = 'repeatable read'`); err != nil {
		t.Fatal(err)
	}
	tb.pool.Reset() // new connections take the database's new default
	levels := make(chan string, 1)
	tb.produce("generic", "iso", "cus_i", 0)
	tb.flush()
	tb.start(consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, _ *consumer.Event) error {
		var level string
		err := tx.QueryRow(ctx, `SHOW transaction_isolation`).Scan(&level)
		select {
		case levels <- level:
		default:
		}
		return err
	}), consumer.RetryPolicy{})
	if got := <-levels; got != "read committed" {
		t.Errorf("the handler's transaction is %q, want read committed", got)
	}
}

// TestRetentionRoundsUnderTraffic: retention rounds on a fast clock (a
// day a round, retention and period a day: every round opens a bucket
// and drops one that closed a retention before) run between chunks of
// traffic while the consumer works: two customers fail for good (DEAD,
// then PARKED behind it), every seventh event fails once and is retried
// (FAILED, its customer parked meanwhile), the rest go through at once.
// Rounds move the unfinished events out of the buckets they drop, while
// the consumer claims, retries and drains. No (source, event_id) is ever
// in two buckets; once the broken customers' blockers are replayed,
// every event has been handled exactly once, each customer's in order:
// no unfinished event went with a dropped bucket.
func TestRetentionRoundsUnderTraffic(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := context.Background()
	var broken, failedOnce sync.Map
	broken.Store("cus_b0", true)
	broken.Store("cus_b1", true)
	tb.start(consumer.HandlerFunc(func(ctx context.Context, tx pgx.Tx, ev *consumer.Event) error {
		if _, bad := broken.Load(ev.CustomerID); bad {
			return consumer.Permanent(errors.New("410 gone"))
		}
		if strings.HasSuffix(ev.EventID, "-f") {
			if _, again := failedOnce.LoadOrStore(ev.EventID, true); !again {
				return errors.New("503 once")
			}
		}
		return recordingHandler(ctx, tx, ev)
	}), consumer.RetryPolicy{MaxAttempts: 5, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})

	var now time.Time
	if err := tb.pool.QueryRow(ctx, `SELECT opened_at FROM event_buckets WHERE bucket = 0`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	// Audit partitions are kept: this test is about events' buckets, and
	// dropping audit_log's needs the audit topic's tombstones.
	cfg := retention.Config{Pool: tb.pool, Retention: retention.MinRetention, AuditRetention: 10 * 365 * 24 * time.Hour}
	const chunks, perChunk = 30, 24
	customers := []string{"cus_b0", "cus_b1", "cus_0", "cus_1", "cus_2", "cus_3", "cus_4", "cus_5"}
	seq := map[string]int{}
	var dropped, moved int64
	for c := range chunks {
		for i := range perChunk {
			cust := customers[(c*perChunk+i)%len(customers)]
			id := fmt.Sprintf("%s-%d", cust, seq[cust])
			if (c*perChunk+i)%7 == 0 {
				id += "-f"
			}
			tb.produce("generic", id, cust, seq[cust])
			seq[cust]++
		}
		tb.flush()
		now = now.Add(retention.MinRetention)
		rep, err := retention.Run(ctx, cfg, now)
		if err != nil {
			t.Fatalf("round %d: %v", c, err)
		}
		dropped += int64(len(rep.Dropped))
		moved += rep.Moved
		tb.waitFor(time.Second, 0, `SELECT count(*) FROM (SELECT FROM events GROUP BY source, event_id HAVING count(*) > 1) twice`)
	}
	if dropped < chunks/2 || moved == 0 {
		t.Errorf("%d rounds dropped %d buckets and moved %d unfinished events; want many drops and some moves", chunks, dropped, moved)
	}

	broken.Clear()
	rows, err := tb.pool.Query(ctx, `SELECT event_id FROM events WHERE status = 'DEAD'`)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(dead) != 2 {
		t.Fatalf("DEAD events %v (%v), want the first of each broken customer", dead, err)
	}
	for _, id := range dead {
		if err := consumer.Replay(ctx, consumer.ReplayConfig{Pool: tb.pool, Audit: audit.Writer{}, Instance: "test"}, "generic", id, "fixed"); err != nil {
			t.Fatal(err)
		}
	}
	tb.waitFor(time.Minute, chunks*perChunk, `SELECT count(DISTINCT event_id) FROM handled`)
	tb.waitFor(time.Second, chunks*perChunk, `SELECT count(*) FROM handled`)
	tb.waitFor(time.Second, 0, `SELECT count(*) FROM events WHERE status <> 'PROCESSED'`)
	tb.waitFor(time.Second, 0, `SELECT count(*) FROM (SELECT customer_id FROM handled GROUP BY customer_id
  HAVING array_agg(seq ORDER BY n) <> array_agg(seq ORDER BY seq)) out_of_order`)
}

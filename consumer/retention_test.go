package consumer_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/retention"
)

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

	var opened time.Time
	if err := tb.pool.QueryRow(context.Background(), `SELECT opened_at FROM event_buckets WHERE bucket = 0`).Scan(&opened); err != nil {
		t.Fatal(err)
	}
	if rep, err := retention.Run(context.Background(), retention.Config{Pool: tb.pool}, opened.Add(retention.PeriodFor(retention.DefaultRetention))); err != nil || rep.Current != 1 {
		t.Fatalf("open bucket 1: %+v, %v", rep, err)
	}
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

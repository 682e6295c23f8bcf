package ingest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/retention"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// An event whose duplicate check found nothing carries the bucket the
// checker knew before the check (wire.HeaderBucket, docs/design.md
// "Retention"), once a bucket after the first is current; a re-drive does
// not, since its row is older.
func TestEventCarriesTheBucketFloor(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var opened time.Time
	if err := pool.QueryRow(context.Background(), `SELECT opened_at FROM event_buckets WHERE bucket = 0`).Scan(&opened); err != nil {
		t.Fatal(err)
	}
	if rep, err := retention.Run(context.Background(), retention.Config{Pool: pool}, opened.Add(retention.PeriodFor(retention.DefaultRetention))); err != nil || rep.Current != 1 {
		t.Fatalf("open bucket 1: %+v, %v", rep, err)
	}
	tb := setup(t, func(o *setupOpts) { o.databaseURL = dbURL })

	// The checker read the bucket when it started.
	body := genericBody("evt_floor", "cus_f")
	if status, _, out := tb.post("/webhooks/generic", signedGeneric(body), body); status != http.StatusAccepted {
		t.Fatalf("evt_floor: %d %s", status, out)
	}
	if got := header(recordOf(t, tb, "evt_floor"), wire.HeaderBucket); got != "1" {
		t.Errorf("evt_floor: %s = %q, want 1", wire.HeaderBucket, got)
	}

	tb.setStatus("generic", "evt_floor_dead", ingest.StatusDead)
	body = genericBody("evt_floor_dead", "cus_f")
	if status, _, out := tb.post("/webhooks/generic", signedGeneric(body), body); status != http.StatusAccepted {
		t.Fatalf("re-drive: %d %s", status, out)
	}
	rec := recordOf(t, tb, "evt_floor_dead")
	if header(rec, wire.HeaderRedrive) != "true" || header(rec, wire.HeaderBucket) != "" {
		t.Errorf("re-drive: redrive %q, %s %q; want true and none", header(rec, wire.HeaderRedrive), wire.HeaderBucket, header(rec, wire.HeaderBucket))
	}
}

func recordOf(t *testing.T, tb *testBundle, eventID string) *kgo.Record {
	t.Helper()
	for _, r := range tb.events() {
		if header(r, wire.HeaderEventID) == eventID {
			return r
		}
	}
	t.Fatalf("no record of %s", eventID)
	return nil
}

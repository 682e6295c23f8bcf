package migrate_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/migrate"
)

// TestCustomerBlocksCarriedOver: migration 4 replaces parked_customers with
// customer_blocks on a populated database. A parked customer stays PARKED
// behind its blocker (and keeps its waiting events); a FAILED event, which
// the old consumer retried from memory, becomes its customer's BLOCKED
// row, due at once, so that any owner retries it.
func TestCustomerBlocksCarriedOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 3)
	_, err := conn.Exec(ctx, `
INSERT INTO events (source, event_id, customer_id, status, attempts, kafka_partition, kafka_offset, payload) VALUES
  ('stripe', 'dead-0', 'cus_p', 'DEAD', 8, 3, 10, '{}'),
  ('stripe', 'wait-1', 'cus_p', 'PARKED', 0, 3, 11, '{}'),
  ('generic', 'fail-0', 'cus_f', 'FAILED', 2, 5, 7, '{}'),
  ('generic', 'done-0', 'cus_f', 'PROCESSED', 1, 5, 6, NULL);
INSERT INTO parked_customers (customer_id, source, blocking_event_id) VALUES ('cus_p', 'stripe', 'dead-0');
INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ('hookstream', 'hookstream.events', 3, 12);`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Up(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	type row struct {
		source, customer, state, blocker string
		partition                        int32
		due                              bool
	}
	rows, err := conn.Query(ctx, `SELECT source, customer_id, state, coalesce(blocking_event_id, ''), kafka_partition,
  coalesce(next_attempt_at <= now(), false) FROM customer_blocks ORDER BY source`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.source, &x.customer, &x.state, &x.blocker, &x.partition, &x.due)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"generic", "cus_f", "BLOCKED", "fail-0", 5, true},
		{"stripe", "cus_p", "PARKED", "dead-0", 3, false},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("customer_blocks %+v, want %+v", got, want)
	}
	var epoch, next int64
	if err := conn.QueryRow(ctx, `SELECT owner_epoch, next_offset FROM consumer_offsets`).Scan(&epoch, &next); err != nil || epoch != 0 || next != 12 {
		t.Fatalf("consumer_offsets: epoch %d next %d (%v)", epoch, next, err)
	}
}

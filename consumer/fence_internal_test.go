package consumer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestFenceLocks: the lock a fenced transaction holds on its partition
// lets another fenced transaction store the position (it used to make it
// wait, and so deadlock with a blocked customer's step), and makes a take
// wait, after which the old epoch is fenced.
func TestFenceLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.PostgresPool(t)
	c := &Consumer{cfg: Config{Pool: pool, Group: "fence-test", Topics: wire.Topics{}.WithDefaults()}}
	taken, err := c.take(ctx, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	mine := []part{{partition: 0, epoch: taken[0].epoch, next: 10}}

	a, err := c.begin(ctx, mine) // a blocked customer's step, say
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Rollback(ctx) }()
	b, err := c.begin(ctx, mine) // a batch
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Rollback(ctx) }()
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second) // the bound of a wait that must not happen
	defer cancel()
	if err := c.storePositions(bctx, b, mine); err != nil {
		t.Fatalf("a position write waited for another fenced transaction: %v", err)
	}
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { _, err := c.take(ctx, []int32{0}); done <- err }()
	for waiting := 0; waiting == 0; {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%FROM consumer_offsets%FOR UPDATE'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("the take did not wait for the fenced transaction (%v)", err)
		default:
		}
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.begin(ctx, mine); !errors.Is(err, errFenced) {
		t.Fatalf("the old epoch after a take: %v, want errFenced", err)
	}
}

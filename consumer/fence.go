package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Fencing. Kafka's group protocol tells a member it lost a partition only
// when it next talks to the coordinator; a member paused past its session
// timeout (GC, SIGSTOP, a network split) keeps working meanwhile. So the
// partition's ownership is also kept in PostgreSQL, where the effects are:
// a member takes a partition by raising its owner_epoch (consumer_offsets)
// and every transaction that writes for the partition first reads the epoch
// under a share lock and gives up unless it is still the one it took. The
// next owner's raise waits for the share locks of transactions in flight,
// so each of those either commits before the new owner reads the position,
// or sees the new epoch and rolls back: no effect, outcome or position of a
// member that lost the partition commits after its successor started. The
// position itself only moves forward.
//
// What a fenced member can still do is what happens outside PostgreSQL: a
// Deliverer's call it had already started. Those are deliveries of events
// whose outcome then rolls back, so the new owner delivers them again: at
// most one batch per lane (a suffix of each customer's events, in order,
// with the same event ids) can reach a destination twice.

// errFenced: another member took the partition; this one must stop.
var errFenced = errors.New("consumer: the partition has a newer owner")

// takeSQL raises the owner epoch of each partition given (creating its row
// with no position, -1) and returns the epochs and the stored positions.
const takeSQL = `INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset, owner_epoch)
SELECT $1, $2, p, -1, 1 FROM unnest($3::int[]) AS p ORDER BY p
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET owner_epoch = o.owner_epoch + 1, updated_at = now()
RETURNING partition, next_offset, owner_epoch`

// takePartitions is the group's AdjustFetchOffsetsFn: it takes the newly
// assigned partitions (fencing their previous owners) and replaces the
// offsets the group would start from with those stored in PostgreSQL,
// where the position moves with the outcomes.
func (c *Consumer) takePartitions(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	parts, ok := offsets[c.cfg.Topics.Events]
	if !ok {
		return offsets, nil
	}
	ids := make([]int32, 0, len(parts))
	for p := range parts {
		ids = append(ids, p)
	}
	rows, err := c.cfg.Pool.Query(ctx, takeSQL, c.cfg.Group, c.cfg.Topics.Events, ids)
	if err != nil {
		// Without its epoch and position the partition must not start:
		// the client retries the assignment.
		return nil, fmt.Errorf("consumer: take partitions: %w", err)
	}
	var p int32
	var next, epoch int64
	taken := map[int32]int64{}
	_, err = pgx.ForEachRow(rows, []any{&p, &next, &epoch}, func() error {
		taken[p] = epoch
		if next >= 0 {
			parts[p] = kgo.NewOffset().At(next)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("consumer: take partitions: %w", err)
	}
	c.mu.Lock()
	for p, e := range taken {
		c.epochs[p] = e
	}
	c.mu.Unlock()
	return offsets, nil
}

// epochOf is the epoch this member took for partition p (0: none yet).
func (c *Consumer) epochOf(p int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epochs[p]
}

// fence checks, inside tx, that this member still owns the partition with
// the given epoch, and holds a share lock on that until tx ends.
func (c *Consumer) fence(ctx context.Context, tx pgx.Tx, partition int32, epoch int64) error {
	var current int64
	err := tx.QueryRow(ctx, `SELECT owner_epoch FROM consumer_offsets
WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR SHARE`, c.cfg.Group, c.cfg.Topics.Events, partition).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && current != epoch {
		return errFenced
	}
	return err
}

// storePositionSQL moves a partition's position forward, only for the
// owner with the given epoch.
const storePositionSQL = `UPDATE consumer_offsets SET next_offset = greatest(next_offset, $4), updated_at = now()
WHERE group_id = $1 AND topic = $2 AND partition = $3 AND owner_epoch = $5`

// execer is a pgx.Tx or the pool.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// storePosition writes the position through q (a transaction or the pool);
// errFenced when the epoch is no longer this member's.
func (c *Consumer) storePosition(ctx context.Context, q execer, partition int32, next, epoch int64) error {
	tag, err := q.Exec(ctx, storePositionSQL, c.cfg.Group, c.cfg.Topics.Events, partition, next, epoch)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return errFenced
	}
	return nil
}

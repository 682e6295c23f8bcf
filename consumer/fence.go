package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fencing. Kafka's group protocol tells a member it lost a partition only
// when it next talks to the coordinator; a member paused past its session
// timeout (GC, SIGSTOP, a network split) keeps working meanwhile. So the
// partition's ownership is also kept in PostgreSQL, where the effects are:
// a member takes a partition by raising its owner_epoch (consumer_offsets)
// and every transaction that writes for the partition first reads the epoch
// under a key-share lock and gives up unless it is still the one it took. The
// next owner's raise (FOR UPDATE) waits for those locks of transactions in flight,
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
	taken, err := c.take(ctx, ids)
	if err != nil {
		// Without its epoch and position the partition must not start:
		// the client retries the assignment.
		return nil, err
	}
	behind := map[int32]kgo.EpochOffset{}
	c.mu.Lock()
	for p, t := range taken {
		c.epochs[p] = t.epoch
		if t.next >= 0 {
			if parts[p].EpochOffset().Offset < t.next {
				behind[p] = kgo.EpochOffset{Epoch: -1, Offset: t.next}
			}
			parts[p] = kgo.NewOffset().At(t.next)
		}
	}
	c.mu.Unlock()
	if len(behind) > 0 {
		// Not from within the group's callback: the commit needs the
		// group, which is busy calling it.
		go c.commitTaken(ctx, behind)
	}
	return offsets, nil
}

// commitTaken commits to the group the positions this member took that
// are ahead of the group's committed offsets. The previous owner stored
// them in PostgreSQL with its outcomes and died, or was fenced, before its
// commit to Kafka went out; the position is the truth, but the group's
// committed offset is what lag tools read, and a partition with nothing
// left to consume would never have it committed again. ctx ends when the
// partitions are revoked: the next owner does the same.
func (c *Consumer) commitTaken(ctx context.Context, offsets map[int32]kgo.EpochOffset) {
	c.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.cfg.Topics.Events: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err == nil {
				for _, t := range resp.Topics {
					for _, p := range t.Partitions {
						if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil && err == nil {
							err = perr
						}
					}
				}
			}
			if err != nil && ctx.Err() == nil {
				c.log.Warn("commit of the positions taken", "error", err)
			}
		})
}

// taking is a partition as take leaves it.
type taking struct{ epoch, next int64 }

// take raises the owner epoch of partitions and returns the new epochs and
// the stored positions (-1: none). It first locks the partitions' rows FOR
// UPDATE, which waits for the FOR KEY SHARE lock every fenced transaction
// holds on them (the upsert alone would not: it updates no key column).
func (c *Consumer) take(ctx context.Context, ids []int32) (map[int32]taking, error) {
	taken := map[int32]taking{}
	err := pgx.BeginFunc(ctx, c.cfg.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = ANY($3)
ORDER BY partition FOR UPDATE`, c.cfg.Group, c.cfg.Topics.Events, ids); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, takeSQL, c.cfg.Group, c.cfg.Topics.Events, ids)
		if err != nil {
			return err
		}
		var p int32
		var t taking
		_, err = pgx.ForEachRow(rows, []any{&p, &t.next, &t.epoch}, func() error { taken[p] = t; return nil })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consumer: take partitions: %w", err)
	}
	return taken, nil
}

// epochOf is the epoch this member took for partition p (0: none yet).
func (c *Consumer) epochOf(p int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epochs[p]
}

// part is a partition as a batch holds it: the epoch its owner runs
// under and the position once the batch is recorded.
type part struct {
	partition int32
	epoch     int64
	next      int64
}

// fencedError names the partition that has a newer owner.
type fencedError struct{ partition int32 }

func (e *fencedError) Error() string {
	return fmt.Sprintf("consumer: partition %d has a newer owner", e.partition)
}

func (e *fencedError) Is(target error) bool { return target == errFenced }

// fence checks, inside tx, that this member still owns each partition with
// the epoch it took, and holds a lock on that until tx ends: FOR KEY SHARE,
// which a take's FOR UPDATE waits for, but which neither another fenced
// transaction nor a position write (an update of no key column) conflicts
// with. FOR SHARE did: a batch storing its position waited for a blocked
// customer's step holding the share lock, while the step waited for a
// customer row the batch held (deadlocks under failures, scripts/bench-failing.sh).
func (c *Consumer) fence(ctx context.Context, tx pgx.Tx, parts []part) error {
	ids := make([]int32, len(parts))
	for i, p := range parts {
		ids[i] = p.partition
	}
	rows, err := tx.Query(ctx, `SELECT partition, owner_epoch FROM consumer_offsets
WHERE group_id = $1 AND topic = $2 AND partition = ANY($3) ORDER BY partition FOR KEY SHARE`, c.cfg.Group, c.cfg.Topics.Events, ids)
	if err != nil {
		return err
	}
	current := map[int32]int64{}
	var p int32
	var epoch int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &epoch}, func() error { current[p] = epoch; return nil }); err != nil {
		return err
	}
	for _, pt := range parts {
		if e, ok := current[pt.partition]; !ok || e != pt.epoch {
			return &fencedError{pt.partition}
		}
	}
	return nil
}

// storePositionsSQL moves partitions' positions forward, each only for the
// owner with the given epoch.
const storePositionsSQL = `UPDATE consumer_offsets o SET next_offset = greatest(o.next_offset, u.next), updated_at = now()
FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS u(p, next, epoch)
WHERE o.group_id = $1 AND o.topic = $2 AND o.partition = u.p AND o.owner_epoch = u.epoch`

// execer is a pgx.Tx or the pool.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// storePositions writes the positions through q (a transaction or the
// pool); errFenced when an epoch is no longer this member's.
func (c *Consumer) storePositions(ctx context.Context, q execer, parts []part) error {
	ps, next, epochs := make([]int32, len(parts)), make([]int64, len(parts)), make([]int64, len(parts))
	for i, p := range parts {
		ps[i], next[i], epochs[i] = p.partition, p.next, p.epoch
	}
	tag, err := q.Exec(ctx, storePositionsSQL, c.cfg.Group, c.cfg.Topics.Events, ps, next, epochs)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(parts)) {
		return errFenced
	}
	return nil
}

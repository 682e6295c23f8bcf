// Package retention bounds hookstream's tables by time: events are
// written into buckets (one partition of the events table each, half the
// retention in days by default) and a bucket's partition is dropped once
// the events retention has passed since it stopped being the current
// one, with the events in it that are not finished moved forward first;
// audit_log is partitioned by range of at, partitions are made a period
// ahead and dropped once wholly older than the audit retention, after
// tombstones on the audit topic for the keys whose last rows they held.
// docs/design.md, "Retention", is the contract.
package retention

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// bucketLock is the advisory lock key of the current bucket: held shared
// by every transaction that writes events, exclusively by a switch to a
// new bucket and by a move of unfinished events out of an old one.
const bucketLock int64 = 0x686f6f6b73627563 // "hooksbuc"; event_bucket() in migration 8 takes it too

// WriterTx is how a transaction that writes events begins: READ
// COMMITTED whatever the database's default, because the argument of
// HoldBuckets needs each statement after the lock to see what committed
// before it; a REPEATABLE READ snapshot taken before the lock was granted
// would not.
var WriterTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// HoldBuckets takes the bucket lock shared until tx ends (tx begun with
// WriterTx). A transaction
// that writes events calls it before it looks any event up: with the lock
// held the current bucket cannot change under it, so every event it did
// not find is absent from every bucket but the current one, where the
// partition's unique key catches a concurrent writer; and no event it
// reads moves to another partition.
func HoldBuckets(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1)", bucketLock)
	return err
}

package ingest

import (
	"context"
	"time"
)

// BucketFloor is a DuplicateChecker that knows a bucket of the events
// table (docs/design.md, "Retention") no later than the one current when
// any look-up it starts afterwards reads the table. A row that look-up
// does not see was written after its snapshot, into the bucket current
// then or a later one (buckets only move forward, under a lock every
// writer of events holds), so the receiver stamps the floor on an event
// whose check found nothing (wire.HeaderBucket), and the consumer's claim
// probes only the partitions from that bucket on.
type BucketFloor interface {
	Floor() int32
}

// Floor implements BucketFloor: the current bucket as last read, 0 before
// the first read or while the table is older than migration 8.
func (d *PostgresDuplicates) Floor() int32 { return d.floor.Load() }

// readFloor reads the current bucket. A read that returns is from a
// snapshot taken before any look-up queued after it, so its value is a
// floor for them; one that fails leaves the floor as it was.
func (d *PostgresDuplicates) readFloor() {
	ctx, cancel := context.WithTimeout(context.Background(), d.maxWait)
	defer cancel()
	var b int32
	if err := d.pool.QueryRow(ctx, `SELECT bucket FROM event_clock`).Scan(&b); err == nil && b > d.floor.Load() {
		d.floor.Store(b)
	}
}

// refreshFloor reads the floor every interval until Close.
func (d *PostgresDuplicates) refreshFloor(interval time.Duration) {
	defer d.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.readFloor()
		}
	}
}

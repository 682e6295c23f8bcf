package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Tombstones writes a tombstone — the key with no value — for each key to
// the audit topic and returns once the broker has acknowledged every one,
// or the first error. Compaction then removes the key's records and, after
// the topic's delete.retention.ms, the tombstone; a reader that keeps the
// latest record per key deletes its copy when it reads one. Keys are
// wire.AuditRecord.Key() values, and the records land on the key's
// partition by the same key partitioner as every audit producer's.
//
// When to call it is the retention job's contract (docs/design.md,
// "Tombstones"): for keys none of whose audit_log rows remain, before
// their rows are dropped, in batches of a few thousand keys. p is a
// client with acks=all (internal/kafka's producers); a transactional one
// must be inside a transaction. An empty key is refused before anything
// is written: it would be a tombstone for no record.
func Tombstones(ctx context.Context, p interface {
	ProduceSync(context.Context, ...*kgo.Record) kgo.ProduceResults
}, topic string, keys []string) error {
	recs := make([]*kgo.Record, len(keys))
	for i, k := range keys {
		if k == "" {
			return errors.New("audit: tombstone with an empty key")
		}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(k)}
	}
	if len(recs) == 0 {
		return nil
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("audit: tombstones on %s: %w", topic, err)
	}
	return nil
}

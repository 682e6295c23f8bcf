package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// TailOptions selects what Tail prints.
type TailOptions struct {
	Brokers []string
	Topic   string // default wire.DefaultAuditTopic
	// Follow keeps reading new records until ctx ends; otherwise Tail stops
	// at the end of the topic as it was when Tail started.
	Follow     bool
	EventID    string
	CustomerID string
	// KafkaOpts are applied to the reading client (TLS, SASL). Default none.
	KafkaOpts []kgo.Opt
}

// Tail prints the audit topic's records as JSON lines, oldest first per
// partition; tombstones are not records and are skipped.
func Tail(ctx context.Context, o TailOptions, w io.Writer) error {
	if o.Topic == "" {
		o.Topic = wire.DefaultAuditTopic
	}
	return readTopic(ctx, o.Brokers, o.KafkaOpts, o.Topic, nil, o.Follow, func(r *kgo.Record) error {
		if r.Value == nil {
			return nil // a tombstone: no record to print
		}
		if o.EventID != "" || o.CustomerID != "" {
			var a wire.AuditRecord
			if err := json.Unmarshal(r.Value, &a); err != nil {
				return nil
			}
			if (o.EventID != "" && a.EventID != o.EventID) || (o.CustomerID != "" && a.CustomerID != o.CustomerID) {
				return nil
			}
		}
		_, err := fmt.Fprintf(w, "%s\n", r.Value)
		return err
	})
}

// readTopic calls fn for each record of topic, read_committed (the relay
// writes in transactions), from the offsets in from (nil: the start of
// each partition), up to the end offsets seen at the start, or forever
// when follow is set.
func readTopic(ctx context.Context, brokers []string, opts []kgo.Opt, topic string, from map[int32]int64, follow bool, fn func(*kgo.Record) error) error {
	base := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID("hookstream-audit-reader"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A partition may end with a transaction's marker, which is
		// never a record: kept, it tells the reader it reached the end.
		kgo.KeepControlRecords()}
	if from == nil {
		base = append(base, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	} else {
		offsets := map[int32]kgo.Offset{}
		for p, o := range from {
			offsets[p] = kgo.NewOffset().At(o)
		}
		base = append(base, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	remaining := map[int32]int64{}
	if !follow {
		ends, err := endOffsets(ctx, kadm.NewClient(cl), topic)
		if err != nil {
			return err
		}
		for p, end := range ends {
			if start, ok := from[p]; end > 0 && (from == nil || ok && start < end) {
				remaining[p] = end
			}
		}
		if len(remaining) == 0 {
			return nil
		}
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			if follow {
				return nil
			}
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("audit: read %s: %w", topic, ferr)
		}
		var err error
		fs.EachRecord(func(r *kgo.Record) {
			if err != nil {
				return
			}
			if !follow {
				end, ok := remaining[r.Partition]
				if !ok {
					return
				}
				// An aborted record at end-1 is never returned; the
				// marker that aborts it comes at end or later.
				if r.Offset >= end-1 {
					delete(remaining, r.Partition)
				}
				if r.Offset >= end {
					return
				}
			}
			if !r.Attrs.IsControl() {
				err = fn(r)
			}
		})
		if err != nil {
			return err
		}
		if !follow && len(remaining) == 0 {
			return nil
		}
	}
}

// endOffsets returns the end offset (the next offset to be written) of
// each partition of topic.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("audit: end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// Trail returns the audit records of one event from the table, oldest first.
func Trail(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, source, eventID string) ([]*wire.AuditRecord, error) {
	rows, err := db.Query(ctx, `SELECT `+selectColumns+` FROM audit_log a WHERE a.source = $1 AND a.event_id = $2 ORDER BY a.at, a.seq`, source, eventID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*wire.AuditRecord
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

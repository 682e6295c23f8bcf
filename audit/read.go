package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
// partition.
func Tail(ctx context.Context, o TailOptions, w io.Writer) error {
	if o.Topic == "" {
		o.Topic = wire.DefaultAuditTopic
	}
	return readTopic(ctx, o.Brokers, o.KafkaOpts, o.Topic, o.Follow, func(r *kgo.Record) error {
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
// writes in transactions): up to the end offsets seen at the start, or
// forever when follow is set.
func readTopic(ctx context.Context, brokers []string, opts []kgo.Opt, topic string, follow bool, fn func(*kgo.Record) error) error {
	base := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID("hookstream-audit-reader"), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A partition may end with a transaction's marker, which is
		// never a record: kept, it tells the reader it reached the end.
		kgo.KeepControlRecords()}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	remaining := map[int32]int64{}
	if !follow {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err != nil {
			return fmt.Errorf("audit: end offsets of %s: %w", topic, err)
		}
		if err := ends.Error(); err != nil {
			return fmt.Errorf("audit: end offsets of %s: %w", topic, err)
		}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				remaining[o.Partition] = o.Offset
			}
		})
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

// Report is what Verify found.
type Report struct {
	Since time.Time `json:"since"`
	// TopicRecords and TableRecords count the records in the window.
	TopicRecords int `json:"topic_records"`
	TableRecords int `json:"table_records"`
	// Pending counts table records the relay has not published yet: not a
	// disagreement.
	Pending int `json:"pending"`
	// MissingFromTable lists audit_ids in the topic but not the table;
	// MissingFromTopic the reverse.
	MissingFromTable []string `json:"missing_from_table"`
	MissingFromTopic []string `json:"missing_from_topic"`
}

// OK reports whether topic and table agree.
func (r *Report) OK() bool { return len(r.MissingFromTable) == 0 && len(r.MissingFromTopic) == 0 }

// Verify compares the audit topic and the audit_log table over records at
// or after since. The topic is compacted: records of an event older than the
// topic's min.compaction.lag.ms may have been replaced by newer ones, so the
// window should stay within it (the default lag is 7 days). opts are
// applied to the client that reads the topic (TLS, SASL).
func Verify(ctx context.Context, pool *pgxpool.Pool, brokers []string, topic string, since time.Time, opts ...kgo.Opt) (*Report, error) {
	if topic == "" {
		topic = wire.DefaultAuditTopic
	}
	rep := &Report{Since: since, MissingFromTable: []string{}, MissingFromTopic: []string{}}
	inTopic := map[string]bool{}
	err := readTopic(ctx, brokers, opts, topic, false, func(r *kgo.Record) error {
		var a wire.AuditRecord
		if err := json.Unmarshal(r.Value, &a); err != nil || a.AuditID == "" || a.At.Before(since) {
			return nil
		}
		inTopic[a.AuditID] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT a.audit_id::text, coalesce((c.commit_seq, a.seq) > (r.commit_seq, r.seq), false)
FROM audit_log a LEFT JOIN audit_commits c ON c.xid = a.xid CROSS JOIN audit_relay r WHERE a.at >= $1`, since)
	if err != nil {
		return nil, fmt.Errorf("audit: read table: %w", err)
	}
	inTable := map[string]bool{}
	var id string
	var pending bool
	_, err = pgx.ForEachRow(rows, []any{&id, &pending}, func() error {
		inTable[id] = true
		if pending {
			rep.Pending++
		} else if !inTopic[id] {
			rep.MissingFromTopic = append(rep.MissingFromTopic, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: read table: %w", err)
	}
	for id := range inTopic {
		if !inTable[id] {
			rep.MissingFromTable = append(rep.MissingFromTable, id)
		}
	}
	sort.Strings(rep.MissingFromTable)
	sort.Strings(rep.MissingFromTopic)
	rep.TopicRecords, rep.TableRecords = len(inTopic), len(inTable)
	return rep, nil
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

package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hookstream/hookstream/internal/backoff"
	"github.com/hookstream/hookstream/internal/wire"
)

// SinkConfig configures a Sink.
type SinkConfig struct {
	Brokers []string      // required
	Pool    *pgxpool.Pool // required
	// Topic is the audit topic. Default wire.DefaultAuditTopic.
	Topic string
	// Group is the sink's consumer group. Default "hookstream-audit-sink".
	Group string
	// Linger is how long the broker may hold a fetch until MinBytes of
	// records have arrived (kgo.FetchMaxWait), so that under live
	// traffic a poll, and the copy statement it costs, carries what
	// arrived in a Linger rather than a few records. Default 100ms,
	// which is at most what it adds to the time a receiver's decision
	// takes to reach the table; at least 10ms (kgo's least).
	Linger time.Duration
	// MinBytes is what a fetch waits for (kgo.FetchMinBytes). Default
	// 256 KiB, some 500 audit records.
	MinBytes int32
	// CommitInterval is how often the offsets of the records copied since
	// the last commit are committed, and only those; a sink whose
	// partitions are revoked, or that leaves the group, commits them
	// then. Default 1s: a sink that crashes copies about that much again,
	// which changes nothing (every copy is idempotent). At least 100ms
	// (kgo's least).
	CommitInterval time.Duration
	// KafkaOpts are applied to the sink's client after its own settings
	// (TLS, SASL, metrics). Default none.
	KafkaOpts []kgo.Opt
	Logger    *slog.Logger
}

// Sink copies the receiver's records from the audit topic into audit_log.
// Records of other actors came from the table through the relay and are
// skipped without a database round trip; a copy that is already there is
// skipped by its audit_id, so the sink may run anywhere, any number of
// times. A record the table refuses is quarantined (audit_quarantine) and
// the sink goes on: one bad record must not hold back every later
// decision.
type Sink struct {
	cfg SinkConfig
	cl  *kgo.Client
}

// NewSink connects the sink's consumer.
func NewSink(cfg SinkConfig) (*Sink, error) {
	if len(cfg.Brokers) == 0 || cfg.Pool == nil {
		return nil, errors.New("audit: sink needs Brokers and Pool")
	}
	if cfg.Topic == "" {
		cfg.Topic = wire.DefaultAuditTopic
	}
	if cfg.Group == "" {
		cfg.Group = "hookstream-audit-sink"
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 100 * time.Millisecond
	}
	if cfg.MinBytes <= 0 {
		cfg.MinBytes = 256 << 10
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sink{cfg: cfg}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("hookstream-audit-sink"),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The relay writes in transactions; its aborted records are
		// not decisions.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(cfg.Linger),
		kgo.FetchMinBytes(cfg.MinBytes),
		// Only records marked (after they are copied) are committed:
		// by the client every CommitInterval, when partitions are
		// revoked and when the sink leaves the group.
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(cfg.CommitInterval),
		kgo.AutoCommitCallback(s.committed),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
	}
	cl, err := kgo.NewClient(append(opts, cfg.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("audit: sink: %w", err)
	}
	s.cl = cl
	return s, nil
}

// committed logs a failed commit; the next one carries the same offsets.
func (s *Sink) committed(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
	if err == nil && resp != nil {
		err = firstCommitError(resp)
	}
	if err != nil {
		s.cfg.Logger.Warn("audit sink: commit", "error", err)
	}
}

func firstCommitError(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

// incoming is a record to copy: decoded, or the reason it could not be.
type incoming struct {
	kr        *kgo.Record
	rec       *wire.AuditRecord
	decodeErr error
}

// Run copies until ctx ends, then leaves the group. Offsets are committed
// only after the rows are in the table (or in quarantine); an outage of
// either side pauses the copy and nothing is lost.
func (s *Sink) Run(ctx context.Context) error {
	defer s.cl.Close() // commits what was marked, as it leaves the group
	for {
		fs := s.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			s.cfg.Logger.Warn("audit sink fetch", "topic", t, "partition", p, "error", err)
		})
		var batch []incoming
		fs.EachRecord(func(r *kgo.Record) {
			if actor, ok := header(r, wire.HeaderAuditActor); ok && actor != string(wire.ActorIngest) {
				return // the relay's: already in the table
			}
			if r.Value == nil {
				return // a tombstone (docs/design.md, "Tombstones"): no record to copy
			}
			var a wire.AuditRecord
			if err := json.Unmarshal(r.Value, &a); err != nil {
				batch = append(batch, incoming{kr: r, decodeErr: err})
				return
			}
			if a.Actor == wire.ActorIngest {
				batch = append(batch, incoming{kr: r, rec: &a})
			}
		})
		for {
			err := s.copy(ctx, batch)
			if err == nil {
				break
			}
			s.cfg.Logger.Warn("audit sink: insert", "error", err)
			if !backoff.Sleep(ctx, time.Second) {
				return nil
			}
		}
		// Every record of the poll is now in the table, in quarantine or
		// not the sink's to copy.
		s.cl.MarkCommitRecords(fs.Records()...)
	}
}

// copy inserts the batch in one statement. When the table refuses it, it
// inserts the records one by one to find the ones refused, and
// quarantines those. Any other error (the database unreachable) is
// returned for the caller to retry; every step is idempotent, so a retry
// after a partial copy repeats nothing.
func (s *Sink) copy(ctx context.Context, batch []incoming) error {
	var good []incoming
	for _, in := range batch {
		if in.decodeErr != nil {
			if err := s.quarantine(ctx, in.kr, reasonDecode, in.decodeErr.Error()); err != nil {
				return err
			}
			continue
		}
		good = append(good, in)
	}
	if len(good) == 0 {
		return nil
	}
	recs := make([]*wire.AuditRecord, len(good))
	for i, in := range good {
		recs[i] = in.rec
	}
	err := insert(ctx, s.cfg.Pool, insertCopiedSQL, recs)
	if _, ok := refused(err); !ok {
		return err
	}
	for _, in := range good {
		err := insert(ctx, s.cfg.Pool, insertCopiedSQL, []*wire.AuditRecord{in.rec})
		if err == nil {
			continue
		}
		code, ok := refused(err)
		if !ok {
			return err
		}
		if err := s.quarantine(ctx, in.kr, code, err.Error()); err != nil {
			return err
		}
	}
	return nil
}

// reasonDecode is the quarantine reason of a record that is not an audit
// record's JSON; a record the table refuses has its SQLSTATE as reason.
const reasonDecode = "decode"

// refused reports whether err is the table refusing the data, and its
// SQLSTATE: a data exception (class 22: a bad UUID, a number out of
// range, a NUL in text), an integrity violation (class 23: an unknown
// action or actor, a missing value) other than a unique violation (a
// copy racing another, which the next try skips), or a value too large
// for an index (54000). Anything else is the database's trouble, not the
// record's.
func refused(err error) (string, bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return "", false
	}
	switch {
	case strings.HasPrefix(pe.Code, "22"), strings.HasPrefix(pe.Code, "23") && pe.Code != "23505", pe.Code == "54000":
		return pe.Code, true
	}
	return "", false
}

// quarantine keeps a record the sink cannot copy, byte for byte, with the
// reason, where an operator can read it, repair it and copy it by hand
// (README, "Kafka records"). The table is in the database the sink already
// writes, so quarantining needs nothing that copying does not; a record
// quarantined twice (a retry) is kept once.
func (s *Sink) quarantine(ctx context.Context, kr *kgo.Record, reason, message string) error {
	headers, err := json.Marshal(rawHeaders(kr.Headers))
	if err != nil {
		return err
	}
	tag, err := s.cfg.Pool.Exec(ctx, `INSERT INTO audit_quarantine (topic, kafka_partition, kafka_offset, record_key, record_value, headers, reason, message)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING`,
		kr.Topic, kr.Partition, kr.Offset, kr.Key, kr.Value, headers, reason, plainText(message))
	if err != nil {
		return fmt.Errorf("audit: quarantine: %w", err)
	}
	if tag.RowsAffected() == 1 {
		sinkQuarantinedTotal.WithLabelValues(reason).Inc()
		s.cfg.Logger.Error("audit sink: record refused and quarantined", "topic", kr.Topic, "partition", kr.Partition,
			"offset", kr.Offset, "reason", reason, "error", message)
	}
	return nil
}

// rawHeader is a record header as audit_quarantine.headers keeps it: as
// text where PostgreSQL's jsonb can hold it as it is, else in base64.
type rawHeader struct {
	Key         string `json:"key,omitempty"`
	KeyBase64   []byte `json:"key_base64,omitempty"`
	Value       string `json:"value,omitempty"`
	ValueBase64 []byte `json:"value_base64,omitempty"`
}

func rawHeaders(hs []kgo.RecordHeader) []rawHeader {
	out := make([]rawHeader, 0, len(hs))
	for _, h := range hs {
		var rh rawHeader
		if jsonbText(h.Key) {
			rh.Key = h.Key
		} else {
			rh.KeyBase64 = []byte(h.Key)
		}
		if jsonbText(string(h.Value)) {
			rh.Value = string(h.Value)
		} else {
			rh.ValueBase64 = h.Value
		}
		out = append(out, rh)
	}
	return out
}

// jsonbText reports whether s survives as a jsonb string unchanged: valid
// UTF-8 (encoding/json would replace the rest) without NUL (jsonb refuses
// \u0000).
func jsonbText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// plainText makes s storable in a text column.
func plainText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// header is the value of r's header key.
func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

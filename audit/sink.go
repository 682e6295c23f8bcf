package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

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
	// KafkaOpts are applied to the sink's client after its own settings
	// (TLS, SASL, metrics). Default none.
	KafkaOpts []kgo.Opt
	Logger    *slog.Logger
}

// Sink copies the receiver's records from the audit topic into audit_log.
// Records of other actors came from the table through the relay and are
// skipped without a database round trip; a copy that is already there is
// skipped by its audit_id, so the sink may run anywhere, any number of
// times.
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("hookstream-audit-sink"),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The relay writes in transactions; its aborted records are
		// not decisions.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
	}
	cl, err := kgo.NewClient(append(opts, cfg.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("audit: sink: %w", err)
	}
	return &Sink{cfg: cfg, cl: cl}, nil
}

// Run copies until ctx ends, then leaves the group. Offsets are committed
// only after the rows are in the table; an outage of either side pauses the
// copy and nothing is lost.
func (s *Sink) Run(ctx context.Context) error {
	defer s.cl.Close()
	for {
		fs := s.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			s.cfg.Logger.Warn("audit sink fetch", "topic", t, "partition", p, "error", err)
		})
		var recs []*wire.AuditRecord
		fs.EachRecord(func(r *kgo.Record) {
			if actor, ok := header(r, wire.HeaderAuditActor); ok && actor != string(wire.ActorIngest) {
				return // the relay's: already in the table
			}
			var a wire.AuditRecord
			if err := json.Unmarshal(r.Value, &a); err != nil || a.AuditID == "" {
				s.cfg.Logger.Error("audit sink: record is not an audit record; skipped", "partition", r.Partition, "offset", r.Offset, "error", err)
				return
			}
			if a.Actor == wire.ActorIngest {
				recs = append(recs, &a)
			}
		})
		for {
			err := s.insert(ctx, recs)
			if err == nil {
				break
			}
			s.cfg.Logger.Warn("audit sink: insert", "error", err)
			if !backoff.Sleep(ctx, time.Second) {
				return nil
			}
		}
		if err := s.cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("audit sink: commit", "error", err)
		}
	}
}

func (s *Sink) insert(ctx context.Context, recs []*wire.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return insert(ctx, s.cfg.Pool, insertCopiedSQL, recs)
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

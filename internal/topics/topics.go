// Package topics creates hookstream's Kafka topics with the configs the
// contract requires (docs/design.md, "Kafka") and checks existing ones.
package topics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/hookstream/hookstream/internal/wire"
)

// Config says how to create the topics.
type Config struct {
	Topics wire.Topics
	// Partitions of the events and DLQ topics. Default 12.
	Partitions int32
	// AuditPartitions of the audit topic. Default 12.
	AuditPartitions int32
	// ReplicationFactor for every topic; -1 (the default when zero) lets the
	// broker decide (default.replication.factor).
	ReplicationFactor int16
	// AuditMinCompactionLag is min.compaction.lag.ms of the audit topic: how
	// long a record is kept before compaction may drop it for a newer one
	// with the same key, so that a reader keeping up sees every record.
	// Default 7 days.
	AuditMinCompactionLag time.Duration
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Topics = c.Topics.WithDefaults()
	if c.Partitions == 0 {
		c.Partitions = 12
	}
	if c.AuditPartitions == 0 {
		c.AuditPartitions = 12
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.AuditMinCompactionLag == 0 {
		c.AuditMinCompactionLag = 7 * 24 * time.Hour
	}
	return c
}

func (c Config) validate() error {
	if c.Partitions < 1 {
		return fmt.Errorf("topics: partitions must be at least 1, got %d", c.Partitions)
	}
	if c.AuditPartitions < 1 {
		return fmt.Errorf("topics: audit partitions must be at least 1, got %d", c.AuditPartitions)
	}
	if c.AuditMinCompactionLag < 0 {
		return errors.New("topics: audit min compaction lag must not be negative")
	}
	return nil
}

// Spec is one topic to create.
type Spec struct {
	Name       string
	Partitions int32
	Configs    map[string]*string
}

// Specs returns the topics hookstream needs, with their configs.
func (c Config) Specs() []Spec {
	c = c.WithDefaults()
	lag := strconv.FormatInt(c.AuditMinCompactionLag.Milliseconds(), 10)
	return []Spec{
		{Name: c.Topics.Events, Partitions: c.Partitions},
		{Name: c.Topics.DLQ, Partitions: c.Partitions},
		{Name: c.Topics.Audit, Partitions: c.AuditPartitions, Configs: map[string]*string{
			"cleanup.policy":        kadm.StringPtr("compact"),
			"min.compaction.lag.ms": kadm.StringPtr(lag),
		}},
	}
}

// Result reports what Ensure did with one topic.
type Result struct {
	Name    string
	Created bool
	// Partitions the topic has now.
	Partitions int32
}

// Ensure creates each missing topic and leaves existing ones alone (it never
// changes partition counts: that would move keys between partitions and
// break per-customer order). It is idempotent.
func Ensure(ctx context.Context, adm *kadm.Client, cfg Config) ([]Result, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var out []Result
	for _, s := range cfg.Specs() {
		resp, err := adm.CreateTopic(ctx, s.Partitions, cfg.ReplicationFactor, s.Configs, s.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			out = append(out, Result{Name: s.Name, Created: true, Partitions: s.Partitions})
			continue
		case errors.Is(err, kerr.TopicAlreadyExists):
		default:
			return out, fmt.Errorf("topics: create %s: %w", s.Name, err)
		}
		details, err := adm.ListTopics(ctx, s.Name)
		if err != nil {
			return out, fmt.Errorf("topics: describe %s: %w", s.Name, err)
		}
		d, ok := details[s.Name]
		if !ok || d.Err != nil {
			return out, fmt.Errorf("topics: describe %s: %v", s.Name, d.Err)
		}
		out = append(out, Result{Name: s.Name, Partitions: int32(len(d.Partitions))})
	}
	return out, nil
}

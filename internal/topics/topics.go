// Package topics creates hookstream's Kafka topics with the configs the
// contract requires (docs/design.md, "Kafka") and checks existing ones.
package topics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// ReplicationFactor of every topic created: on how many brokers each
	// partition lives. Default (0): min(3, the number of brokers). -1 lets
	// the broker decide (default.replication.factor).
	ReplicationFactor int16
	// MinInsyncReplicas is min.insync.replicas of every topic created: how
	// many replicas must have a record before an acks=all produce (every
	// hookstream producer's) is acknowledged. Default (0): 2 when the
	// replication factor is 3 or more, else 1; with ReplicationFactor -1,
	// the broker's own min.insync.replicas.
	MinInsyncReplicas int
	// AuditMinCompactionLag is min.compaction.lag.ms of the audit topic: how
	// long a record is kept before compaction may drop it for a newer one
	// with the same key, so that a reader keeping up sees every record.
	// Default 7 days.
	AuditMinCompactionLag time.Duration
	// EventsRetention is retention.ms of the events topic: how long an
	// accepted event stays there, so the longest consumer outage that
	// loses nothing (the consumer reads the event from the topic). Default
	// 7 days; MinRetention at least.
	EventsRetention time.Duration
	// DLQRetention is retention.ms of the DLQ topic: how long a dead
	// event's record stays for the tools that read it. Default 30 days;
	// MinRetention at least.
	DLQRetention time.Duration
	// AuditDeleteRetention is delete.retention.ms of the audit topic: how
	// long a tombstone stays once the cleaner has reached it, so how far
	// behind a reader of the compacted topic may be and still see it
	// (docs/design.md, "Tombstones"). Default 7 days, as
	// AuditMinCompactionLag: one bound for readers. MinRetention at least.
	AuditDeleteRetention time.Duration
}

// MinRetention is the shortest retention Config accepts: below it a
// consumer restart or a reader's pause loses records, which a typo such
// as 7s for 7d would otherwise do without a word.
const MinRetention = time.Hour

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Topics = c.Topics.WithDefaults()
	if c.Partitions == 0 {
		c.Partitions = 12
	}
	if c.AuditPartitions == 0 {
		c.AuditPartitions = 12
	}
	if c.AuditMinCompactionLag == 0 {
		c.AuditMinCompactionLag = 7 * 24 * time.Hour
	}
	if c.EventsRetention == 0 {
		c.EventsRetention = 7 * 24 * time.Hour
	}
	if c.DLQRetention == 0 {
		c.DLQRetention = 30 * 24 * time.Hour
	}
	if c.AuditDeleteRetention == 0 {
		c.AuditDeleteRetention = 7 * 24 * time.Hour
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
	for _, r := range []struct {
		name string
		d    time.Duration
	}{{"events retention", c.EventsRetention}, {"DLQ retention", c.DLQRetention}, {"audit delete retention", c.AuditDeleteRetention}} {
		if r.d < MinRetention {
			return fmt.Errorf("topics: %s must be at least %s, got %s", r.name, MinRetention, r.d)
		}
	}
	if c.ReplicationFactor < -1 {
		return fmt.Errorf("topics: replication factor must be -1 (the broker's default) or at least 1, got %d", c.ReplicationFactor)
	}
	if c.MinInsyncReplicas < 0 {
		return fmt.Errorf("topics: min.insync.replicas must be at least 1, got %d", c.MinInsyncReplicas)
	}
	if c.ReplicationFactor > 0 && c.MinInsyncReplicas > int(c.ReplicationFactor) {
		// Every acks=all produce would fail with NotEnoughReplicas.
		return fmt.Errorf("topics: min.insync.replicas %d is more than the replication factor %d: no write could ever be acknowledged", c.MinInsyncReplicas, c.ReplicationFactor)
	}
	return nil
}

// Durability returns the config with ReplicationFactor and
// MinInsyncReplicas resolved for a cluster of the given number of brokers:
// the replication factor defaults to min(3, brokers) and
// min.insync.replicas to 2 from a factor of 3 up, else 1.
//
// Three replicas with two in sync is what lets a broker fail, or restart
// for an upgrade, with no acknowledged record lost and writes still
// accepted. Fewer brokers cannot give that; a factor of 2 with two in sync
// would refuse every write while either broker is down.
func (c Config) Durability(brokers int) Config {
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = int16(min(3, max(brokers, 1)))
	}
	if c.MinInsyncReplicas == 0 && c.ReplicationFactor > 0 {
		c.MinInsyncReplicas = 1
		if c.ReplicationFactor >= 3 {
			c.MinInsyncReplicas = 2
		}
	}
	return c
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
	// cleanup.policy is set on every topic, not left to the broker's
	// log.cleanup.policy, so that retention.ms means what it says.
	specs := []Spec{
		{Name: c.Topics.Events, Partitions: c.Partitions, Configs: map[string]*string{
			"cleanup.policy": kadm.StringPtr("delete"),
			"retention.ms":   millis(c.EventsRetention),
		}},
		{Name: c.Topics.DLQ, Partitions: c.Partitions, Configs: map[string]*string{
			"cleanup.policy": kadm.StringPtr("delete"),
			"retention.ms":   millis(c.DLQRetention),
		}},
		{Name: c.Topics.Audit, Partitions: c.AuditPartitions, Configs: map[string]*string{
			"cleanup.policy":        kadm.StringPtr("compact"),
			"min.compaction.lag.ms": millis(c.AuditMinCompactionLag),
			"delete.retention.ms":   millis(c.AuditDeleteRetention),
		}},
	}
	if c.MinInsyncReplicas > 0 {
		for _, s := range specs {
			s.Configs[minInsync] = kadm.StringPtr(strconv.Itoa(c.MinInsyncReplicas))
		}
	}
	return specs
}

const minInsync = "min.insync.replicas"

func millis(d time.Duration) *string {
	return kadm.StringPtr(strconv.FormatInt(d.Milliseconds(), 10))
}

// Result reports what Ensure did with one topic.
type Result struct {
	Name    string
	Created bool
	// Partitions the topic has now.
	Partitions int32
	// ReplicationFactor of the topic (the smallest of its partitions'),
	// and its min.insync.replicas; -1 and 0 when the broker chose them
	// for a topic created here.
	ReplicationFactor int16
	MinInsyncReplicas int
	// Weaker, for a topic that existed, says how its durability falls
	// short of what Ensure would have created ("" when it does not). Such
	// a topic loses acknowledged records, or accepts writes that one
	// more failure would lose, sooner than asked; Ensure does not change
	// it (moving replicas is an operator's decision).
	Weaker string

	configs map[string]kadm.Config // the topic's configs by key, from describe
}

// Warning is the message to show for a topic that existed with weaker
// settings, "" for any other.
func (r Result) Warning() string {
	if r.Weaker == "" {
		return ""
	}
	return fmt.Sprintf("topic %s exists with replication factor %d and min.insync.replicas %d, weaker than asked: %s",
		r.Name, r.ReplicationFactor, r.MinInsyncReplicas, r.Weaker)
}

// Ensure creates each missing topic and leaves existing ones alone (it never
// changes partition counts: that would move keys between partitions and
// break per-customer order), reporting those with weaker durability than
// asked. It is idempotent. A config it refuses creates nothing.
func Ensure(ctx context.Context, adm *kadm.Client, cfg Config) ([]Result, error) {
	cfg, err := resolve(ctx, adm, cfg)
	if err != nil {
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
			out = append(out, Result{Name: s.Name, Created: true, Partitions: s.Partitions,
				ReplicationFactor: cfg.ReplicationFactor, MinInsyncReplicas: cfg.MinInsyncReplicas})
			continue
		case errors.Is(err, kerr.TopicAlreadyExists):
		default:
			return out, fmt.Errorf("topics: create %s: %w", s.Name, err)
		}
		r, err := describe(ctx, adm, s.Name)
		if err != nil {
			return out, err
		}
		r.Weaker = weaker(r, cfg)
		out = append(out, r)
	}
	return out, nil
}

// resolve fills in cfg's defaults, its durability for the cluster's
// brokers, and refuses what the cluster cannot give.
func resolve(ctx context.Context, adm *kadm.Client, cfg Config) (Config, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return cfg, fmt.Errorf("topics: list brokers: %w", err)
	}
	cfg = cfg.Durability(len(brokers))
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	if int(cfg.ReplicationFactor) > len(brokers) {
		return cfg, fmt.Errorf("topics: replication factor %d: the cluster has %d broker(s)", cfg.ReplicationFactor, len(brokers))
	}
	// With the replication factor left to the broker (-1) validate cannot
	// compare the two; no topic has more replicas than there are brokers.
	if cfg.MinInsyncReplicas > len(brokers) {
		return cfg, fmt.Errorf("topics: min.insync.replicas %d: the cluster has %d broker(s), so no write could ever be acknowledged", cfg.MinInsyncReplicas, len(brokers))
	}
	return cfg, nil
}

// describe reads an existing topic's partitions, replication factor and
// effective min.insync.replicas (the topic's own, else the broker's).
//
// A topic just created by someone else is not known to every broker yet:
// the controller has it, the brokers learn it moments later, and one of
// them answers UNKNOWN_TOPIC_OR_PARTITION meanwhile. That answer is
// retried until ctx ends.
func describe(ctx context.Context, adm *kadm.Client, name string) (Result, error) {
	for {
		r, err := describeOnce(ctx, adm, name)
		if !errors.Is(err, kerr.UnknownTopicOrPartition) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func describeOnce(ctx context.Context, adm *kadm.Client, name string) (Result, error) {
	details, err := adm.ListTopics(ctx, name)
	if err != nil {
		return Result{}, fmt.Errorf("topics: describe %s: %w", name, err)
	}
	d, ok := details[name]
	if !ok {
		return Result{}, fmt.Errorf("topics: describe %s: %w", name, kerr.UnknownTopicOrPartition)
	}
	if d.Err != nil {
		return Result{}, fmt.Errorf("topics: describe %s: %w", name, d.Err)
	}
	r := Result{Name: name, Partitions: int32(len(d.Partitions)), ReplicationFactor: -1}
	for _, p := range d.Partitions {
		if n := int16(len(p.Replicas)); r.ReplicationFactor < 0 || n < r.ReplicationFactor {
			r.ReplicationFactor = n
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = rcs.On(name, nil); err == nil {
			err = rc.Err
		}
		r.configs = make(map[string]kadm.Config, len(rc.Configs))
		for _, c := range rc.Configs {
			r.configs[c.Key] = c
		}
		mi := r.configs[minInsync]
		r.MinInsyncReplicas, _ = strconv.Atoi(mi.MaybeValue())
	}
	if err != nil {
		return Result{}, fmt.Errorf("topics: describe the configs of %s: %w", name, err)
	}
	return r, nil
}

// weaker compares an existing topic with what cfg (resolved by
// Durability) would create; a setting left to the broker compares with
// nothing.
func weaker(r Result, cfg Config) string {
	var short []string
	if cfg.ReplicationFactor > 0 && r.ReplicationFactor < cfg.ReplicationFactor {
		short = append(short, fmt.Sprintf("replication factor %d < %d", r.ReplicationFactor, cfg.ReplicationFactor))
	}
	if cfg.MinInsyncReplicas > 0 && r.MinInsyncReplicas < cfg.MinInsyncReplicas {
		short = append(short, fmt.Sprintf("min.insync.replicas %d < %d", r.MinInsyncReplicas, cfg.MinInsyncReplicas))
	}
	return strings.Join(short, ", ")
}

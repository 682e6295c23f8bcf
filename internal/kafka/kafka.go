// Package kafka builds franz-go clients with the settings hookstream's
// guarantees depend on, so no component configures its own producer.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is how to reach the brokers.
type Config struct {
	// Brokers are seed addresses (host:port). Required.
	Brokers []string
	// ClientID names the client in broker logs. Default "hookstream".
	ClientID string
	// ProduceTimeout is the record delivery timeout. Default 5s.
	ProduceTimeout time.Duration
	// Opts are applied to the client after hookstream's settings: TLS and
	// SASL (Security.Opts), test tweaks. Default none.
	Opts []kgo.Opt
	// Metrics exports the client's metrics on /metrics (see Metrics).
	// Default false.
	Metrics bool
}

// ParseBrokers splits a comma-separated broker list, dropping blanks.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = "hookstream"
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 5 * time.Second
	}
	return c
}

// NewProducer returns a client for producing events and audit records:
// idempotent (franz-go's default, kept explicit by not disabling it), acks
// from all in-sync replicas, and no linger. franz-go's default 10ms linger
// would make every acknowledged request wait for the linger; with no linger
// concurrent requests still share batches because a batch accumulates while
// the previous produce request is in flight.
func NewProducer(cfg Config, opts ...kgo.Opt) (*kgo.Client, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers configured (HOOKSTREAM_KAFKA_BROKERS)")
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		// Without this the client keeps a record it has tried to send until
		// the broker answers, however long an outage lasts, and a request
		// answered 503 at its timeout could still be stored minutes later.
		// With it, a record failed to us at the deadline is dropped from
		// the buffer. Idempotence still covers the client's own retries; a
		// provider's retry of a record that did land after all is a
		// duplicate the consumer's claim absorbs.
		kgo.AllowIdempotentProduceCancellation(),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// Keep partitioning by key stable and compatible with the Java
		// client (murmur2), so every producer sends a customer to the same
		// partition and analytics tools agree.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}
	cl, err := kgo.NewClient(append(append(base, cfg.extra()...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return cl, nil
}

// transactionalMetadataMinAge is the least time between two metadata
// refreshes of a transactional producer: a retry waits at most that.
const transactionalMetadataMinAge = 200 * time.Millisecond

// NewTransactionalProducer returns a producer whose records are written in
// Kafka transactions under transactionalID (BeginTransaction, ProduceSync,
// EndTransaction), with acks from all in-sync replicas and no linger. A
// new client with the same transactionalID fences this one as soon as it
// initializes its producer id (ProducerID): this client's open transaction
// is aborted and it can commit nothing more. Readers that must not see
// aborted records read with kgo.FetchIsolationLevel(kgo.ReadCommitted()).
// Unlike NewProducer it cannot drop records at their deadline (franz-go
// refuses idempotent produce cancellation with transactions); an
// unanswered transaction is aborted instead. The transaction timeout is
// 10s: a transaction left open by a crash holds back read_committed
// readers of its partitions until the next client with the same id
// starts, or for at most that long.
func NewTransactionalProducer(cfg Config, transactionalID string, opts ...kgo.Opt) (*kgo.Client, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers configured (HOOKSTREAM_KAFKA_BROKERS)")
	}
	if transactionalID == "" {
		return nil, errors.New("kafka: a transactional producer needs a transactional id")
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.TransactionalID(transactionalID),
		kgo.TransactionTimeout(10 * time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		// A transaction's first produce can meet the previous commit
		// still writing its markers (CONCURRENT_TRANSACTIONS, under
		// KIP-890's transactions of Apache Kafka 4). The client retries
		// it after a metadata refresh, which it spaces by this age
		// (default 5 s); meanwhile the partition's later batches come
		// back OUT_OF_ORDER_SEQUENCE_NUMBER. On a 3-node cluster the
		// audit relay's rounds stalled 3-5 s this way, and it published
		// 1.7-2.4k events/s instead of 4.6k (BENCHMARKS.md, "Apache
		// Kafka: a 3-node cluster beside kfake").
		kgo.MetadataMinAge(transactionalMetadataMinAge),
	}
	cl, err := kgo.NewClient(append(append(base, cfg.extra()...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return cl, nil
}

func (c Config) extra() []kgo.Opt {
	opts := append([]kgo.Opt(nil), c.Opts...)
	if c.Metrics {
		opts = append(opts, Metrics())
	}
	return opts
}

// NewAdmin returns an admin client and the client under it; close the latter.
func NewAdmin(cfg Config) (*kadm.Client, *kgo.Client, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, nil, errors.New("kafka: no brokers configured (HOOKSTREAM_KAFKA_BROKERS)")
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.ClientID(cfg.ClientID)}, cfg.extra()...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: %w", err)
	}
	return kadm.NewClient(cl), cl, nil
}

// Ping checks that a broker answers within ctx.
func Ping(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: ping: %w", err)
	}
	return nil
}

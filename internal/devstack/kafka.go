package devstack

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaConfig configures the embedded broker.
type KafkaConfig struct {
	// DataDir persists the log; "" keeps it in memory.
	DataDir string
	// ListenAddr is a loopback host:port; port 0 picks a free one.
	// Default "127.0.0.1:9092".
	ListenAddr string
}

// Kafka is an embedded single-broker Kafka-protocol cluster.
type Kafka struct {
	c *kfake.Cluster
}

// StartKafka starts the broker. With DataDir set, records acknowledged
// before Close are there again after a StartKafka on the same directory.
func StartKafka(_ context.Context, cfg KafkaConfig) (*Kafka, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:9092"
	}
	host, portStr, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("kafka listen address %q: %w", cfg.ListenAddr, err)
	}
	// kfake binds 127.0.0.1 only; refuse an address it would not honour.
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("kafka listen address %q: the embedded broker listens on 127.0.0.1 only; use a 127.0.0.1 address or set HOOKSTREAM_KAFKA_BROKERS to a real broker", cfg.ListenAddr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("kafka listen address %q: bad port", cfg.ListenAddr)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.ClusterID("hookstream-dev")}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", cfg.ListenAddr, err)
	}
	return &Kafka{c: c}, nil
}

// Addrs are the broker's host:port addresses.
func (k *Kafka) Addrs() []string { return k.c.ListenAddrs() }

// Cluster exposes kfake's controls (fault injection, compaction) to tests.
func (k *Kafka) Cluster() *kfake.Cluster { return k.c }

// Close stops the broker, writing its state to DataDir.
func (k *Kafka) Close() { k.c.Close() }

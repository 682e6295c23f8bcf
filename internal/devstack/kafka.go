package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaConfig configures the embedded broker.
type KafkaConfig struct {
	// DataDir persists topics, records, committed offsets and producer
	// state; "" keeps everything in memory. Default "".
	DataDir string
	// ListenAddr is the host:port to listen on. The host must be a
	// loopback address (or "localhost", meaning 127.0.0.1); port 0 picks a
	// free port, see Kafka.Addrs. Default "127.0.0.1:9092", Kafka's usual
	// port, so kcat and analytics tools find it.
	ListenAddr string
	// Partitions is what a CreateTopics asking for the broker's default
	// (-1) gets. Topics are not created on first use: a mistyped topic name
	// fails instead of silently creating a topic. 0 keeps kfake's default
	// (10).
	Partitions int32
	// SyncWrites fsyncs every produced batch before it is acknowledged.
	// Default false, like Kafka (log.flush.interval.messages): an
	// acknowledged record survives the crash of this process (it is in the
	// OS page cache) but not necessarily a crash of the machine.
	SyncWrites bool
	// Logf receives the broker's warnings and errors (such as a failure to
	// persist state); nil discards them.
	Logf func(format string, args ...any)
}

// DefaultKafkaListenAddr is KafkaConfig.ListenAddr's default.
const DefaultKafkaListenAddr = "127.0.0.1:9092"

// Kafka is an embedded single-broker Kafka-protocol cluster.
type Kafka struct {
	c         *kfake.Cluster
	lock      *dirLock
	closeOnce sync.Once
}

// StartKafka starts the broker. With DataDir set, what the broker
// acknowledged before Close is there again after a StartKafka on the same
// directory; only one broker may use a directory at a time.
func StartKafka(_ context.Context, cfg KafkaConfig) (*Kafka, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultKafkaListenAddr
	}
	host, port, err := loopbackAddr(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	bind := net.JoinHostPort(host, strconv.Itoa(port))
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake always asks for 127.0.0.1; bind the loopback address asked
		// for instead, which the broker then advertises in its metadata.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, bind)
		}),
		kfake.ClusterID("hookstream-dev"),
	}
	if cfg.Partitions > 0 {
		opts = append(opts, kfake.DefaultNumPartitions(int(cfg.Partitions)))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.Logf != nil {
		opts = append(opts, kfake.WithLogger(kfakeLogger(cfg.Logf)))
	}
	k := &Kafka{}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("embedded broker: data directory: %w", err)
		}
		if k.lock, err = lockDir(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("embedded broker: %w (another `hookstream dev`? give each its own --data-dir)", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	k.c, err = kfake.NewCluster(opts...)
	if err != nil {
		k.lock.unlock()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded broker: %s is already in use (another `hookstream dev` or a Kafka broker?): choose another address (port 0 picks a free one) or point HOOKSTREAM_KAFKA_BROKERS at the broker that is there: %w", bind, err)
		}
		if cfg.DataDir != "" {
			return nil, fmt.Errorf("embedded broker on %s with data in %s: %w", bind, cfg.DataDir, err)
		}
		return nil, fmt.Errorf("embedded broker on %s: %w", bind, err)
	}
	return k, nil
}

// loopbackAddr validates a listen address for the embedded broker: it has
// no authentication and no TLS, so it must not be reachable from other
// machines. Serving a network is a job for a real broker.
func loopbackAddr(addr string) (host string, port int, err error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("embedded broker: listen address %q: %w", addr, err)
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("embedded broker: listen address %q: port must be a number from 0 to 65535", addr)
	}
	if host == "localhost" {
		// Resolving "localhost" may give ::1 or 127.0.0.1 depending on the
		// machine; clients are told the address, so pick one.
		return "127.0.0.1", port, nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", 0, fmt.Errorf("embedded broker: listen address %q: the host must be a loopback address such as 127.0.0.1, because the embedded broker (kfake) has no authentication and serves this machine only; to serve other machines run a real Kafka (docker-compose.yml) and set HOOKSTREAM_KAFKA_BROKERS", addr)
	}
	return host, port, nil
}

// Addrs are the broker's host:port addresses, with the real port when
// ListenAddr asked for port 0.
func (k *Kafka) Addrs() []string { return k.c.ListenAddrs() }

// Cluster exposes kfake's controls (fault injection, compaction) to tests.
func (k *Kafka) Cluster() *kfake.Cluster { return k.c }

// Close stops the broker: it stops listening, drops client connections,
// writes its state to DataDir and releases the directory. Calling it again
// is a no-op.
func (k *Kafka) Close() {
	k.closeOnce.Do(func() {
		k.c.Close()
		k.lock.unlock()
	})
}

type kfakeLogger func(string, ...any)

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	if level == kfake.LogLevelNone || level > kfake.LogLevelWarn {
		return
	}
	l("kfake "+level.String()+": "+format, args...)
}

package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/hookstream/hookstream/internal/devstack"
)

// Images used when a Docker engine answers.
const (
	postgresImage = "postgres:17-alpine"
	kafkaImage    = "apache/kafka:4.3.1"
)

// startPostgresContainer runs PostgreSQL in Docker, removed when Main ends
// (or by testcontainers' reaper when the test binary dies first).
func startPostgresContainer(ctx context.Context) (string, error) {
	c, err := tcpostgres.Run(ctx, postgresImage,
		tcpostgres.WithDatabase("postgres"),
		tcpostgres.WithUsername("postgres"),
		tcpostgres.WithPassword("postgres"),
		tcpostgres.BasicWaitStrategies(),
		// The module already turns fsync off; parallel tests need more
		// than the default 100 connections, as with devstack.
		testcontainers.WithCmdArgs("-c", "max_connections=200"),
	)
	if c != nil {
		atExit(func() { _ = testcontainers.TerminateContainer(c) })
	}
	if err != nil {
		return "", fmt.Errorf("testcontainers postgres: %w", err)
	}
	return c.ConnectionString(ctx, "sslmode=disable")
}

// startKafkaContainer runs a single-node KRaft Apache Kafka whose host port
// is chosen up front, so the broker can advertise the address clients on
// the host will use.
func startKafkaContainer(ctx context.Context) ([]string, error) {
	port, err := devstack.FreePort()
	if err != nil {
		return nil, err
	}
	hostPort := strconv.Itoa(port)
	c, err := testcontainers.Run(ctx, kafkaImage,
		testcontainers.WithEnv(map[string]string{
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://:9092,CONTROLLER://:9093",
			"KAFKA_ADVERTISED_LISTENERS":                     "PLAINTEXT://127.0.0.1:" + hostPort,
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9093",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
		}),
		testcontainers.WithExposedPorts("9092/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			p, _ := network.ParsePort("9092/tcp")
			hc.PortBindings = network.PortMap{p: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort}}}
		}),
		testcontainers.WithWaitStrategy(wait.ForLog("Kafka Server started").WithStartupTimeout(2*time.Minute)),
	)
	if c != nil {
		atExit(func() { _ = testcontainers.TerminateContainer(c) })
	}
	if err != nil {
		return nil, fmt.Errorf("testcontainers kafka: %w", err)
	}
	return []string{"127.0.0.1:" + hostPort}, nil
}

package testenv

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/topics"
	"github.com/hookstream/hookstream/internal/wire"
)

var kafkaShared struct {
	once    sync.Once
	source  string
	brokers []string
	err     error
}

// Kafka returns seed brokers shared by the tests of this binary. Tests
// share the brokers, not topics: use Topics for topics of the test's own.
func Kafka(t testing.TB) []string {
	t.Helper()
	ran := false
	kafkaShared.once.Do(func() {
		ran = true
		kafkaShared.brokers, kafkaShared.source, kafkaShared.err = startKafka()
	})
	if kafkaShared.err != nil {
		unavailable(t, "Kafka: %v", kafkaShared.err)
	}
	if ran {
		t.Logf("testenv: Kafka from %s: %s", kafkaShared.source, strings.Join(kafkaShared.brokers, ","))
	}
	return kafkaShared.brokers
}

func startKafka() (brokers []string, source string, err error) {
	// Long enough for Maven to resolve Apache Kafka on a machine's first run.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if b := kafka.ParseBrokers(os.Getenv("HOOKSTREAM_TEST_KAFKA_BROKERS")); len(b) > 0 {
		source = "HOOKSTREAM_TEST_KAFKA_BROKERS"
		// Fail here, with the reason, rather than in every test's timeout.
		if err := ping(ctx, b); err != nil {
			return nil, source, fmt.Errorf("%s=%s: %w", source, strings.Join(b, ","), err)
		}
		return b, source, nil
	}
	apache, err := apacheMode()
	if err != nil {
		return nil, "", err
	}
	if apache {
		c, err := startApache(ctx, 3)
		if err != nil {
			return nil, "", err
		}
		atExit(c.close)
		return c.brokers, "Apache Kafka, 3 nodes (scripts/kafka-cluster.sh in " + c.dir + ")", nil
	}
	if dockerEngine() == nil {
		source = "testcontainers (" + kafkaImage + ")"
		b, err := startKafkaContainer(ctx)
		if err == nil {
			err = ping(ctx, b)
		}
		return b, source, err
	} else if requireDocker() {
		return nil, "", fmt.Errorf("HOOKSTREAM_TEST_DOCKER is set: %w", dockerEngine())
	}
	// Any free port: the broker is shared and never restarted (NewKafka is
	// for tests that restart one), so no address needs to stay stable.
	k, err := devstack.StartKafka(ctx, devstack.KafkaConfig{ListenAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, "", err
	}
	atExit(k.Close)
	return k.Addrs(), "an in-process kfake broker", nil
}

func ping(ctx context.Context, brokers []string) error {
	_, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return kafka.Ping(ctx, cl)
}

// Topics creates hookstream's three topics (events, DLQ, audit; 12
// partitions each, like production) under names of this test's own, and
// deletes them when the test ends.
func Topics(t testing.TB, brokers []string) wire.Topics {
	t.Helper()
	return TopicsN(t, brokers, 12)
}

// nameUnsafe matches what does not go into a topic name prefix. Kafka
// allows [a-zA-Z0-9._-], but '.' and '_' collide in its metric names, so
// the prefix keeps to one of them: '.' separates the parts.
var nameUnsafe = regexp.MustCompile(`[^a-z0-9]+`)

// TopicsN is Topics with the given number of partitions for each topic.
func TopicsN(t testing.TB, brokers []string, partitions int32) wire.Topics {
	t.Helper()
	if partitions < 1 {
		t.Fatalf("testenv: TopicsN: %d partitions", partitions)
	}
	name := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 80 {
		name = name[:80]
	}
	prefix := "t-" + name + "-" + randomSuffix() + "."
	tp := wire.Topics{Events: prefix + "events", DLQ: prefix + "dlq", Audit: prefix + "audit"}
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := topics.Ensure(ctx, adm, topics.Config{Topics: tp, Partitions: partitions, AuditPartitions: partitions}); err != nil {
		t.Fatalf("testenv: create topics: %v", err)
	}
	if err := waitTopicsReady(ctx, brokers, partitions, tp.Events, tp.DLQ, tp.Audit); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		// Best effort: the broker may be gone (an outage test that ended
		// with it stopped), and a fresh name per test means leftovers
		// bother no one.
		adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
		if err != nil {
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, tp.Events, tp.DLQ, tp.Audit)
	})
	return tp
}

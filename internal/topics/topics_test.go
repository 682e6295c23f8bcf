package topics_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/topics"
	"github.com/hookstream/hookstream/internal/wire"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Ensure creates the topics with their configs, and a second run (a
// restart, another replica) leaves them as they are.
func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	suffix := time.Now().Format("150405.000000")
	cfg := topics.Config{Topics: wire.Topics{Events: "ens.events." + suffix, DLQ: "ens.dlq." + suffix, Audit: "ens.audit." + suffix}, Partitions: 3, AuditMinCompactionLag: time.Hour}
	t.Cleanup(func() {
		_, _ = adm.DeleteTopics(context.Background(), cfg.Topics.Events, cfg.Topics.DLQ, cfg.Topics.Audit)
	})
	for run := range 2 {
		res, err := topics.Ensure(ctx, adm, cfg)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, r := range res {
			if r.Created != (run == 0) || r.Partitions != map[bool]int32{true: 12, false: 3}[r.Name == cfg.Topics.Audit] {
				t.Errorf("run %d: %+v", run, r)
			}
		}
	}
	rc, err := adm.DescribeTopicConfigs(ctx, cfg.Topics.Audit)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		got[c.Key] = c.MaybeValue()
	}
	if got["cleanup.policy"] != "compact" || got["min.compaction.lag.ms"] != "3600000" {
		t.Errorf("audit topic configs: cleanup.policy=%q min.compaction.lag.ms=%q", got["cleanup.policy"], got["min.compaction.lag.ms"])
	}
}

func TestDurabilityDefaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cfg       topics.Config
		brokers   int
		rf        int16
		minInsync int
	}{
		{topics.Config{}, 1, 1, 1},
		{topics.Config{}, 2, 2, 1},
		{topics.Config{}, 3, 3, 2},
		{topics.Config{}, 5, 3, 2},
		{topics.Config{ReplicationFactor: 2}, 5, 2, 1},
		{topics.Config{ReplicationFactor: 4}, 5, 4, 2},
		{topics.Config{MinInsyncReplicas: 3}, 5, 3, 3},
		{topics.Config{ReplicationFactor: 3, MinInsyncReplicas: 1}, 3, 3, 1},
		// Left to the broker: nothing to base a default on.
		{topics.Config{ReplicationFactor: -1}, 3, -1, 0},
		{topics.Config{ReplicationFactor: -1, MinInsyncReplicas: 2}, 3, -1, 2},
	}
	for _, c := range cases {
		got := c.cfg.Durability(c.brokers)
		if got.ReplicationFactor != c.rf || got.MinInsyncReplicas != c.minInsync {
			t.Errorf("%+v on %d brokers: replication factor %d, min.insync.replicas %d; want %d, %d",
				c.cfg, c.brokers, got.ReplicationFactor, got.MinInsyncReplicas, c.rf, c.minInsync)
		}
	}
}

// durability reads a topic's replication factor (the smallest of its
// partitions') and effective min.insync.replicas from the broker.
// A broker may not know a topic created moments ago (see describe in
// topics.go): ask until one does, or the deadline.
func durability(t *testing.T, adm *kadm.Client, topic string) (int16, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		rf, mi, err := durabilityOnce(ctx, adm, topic)
		if err == nil {
			return rf, mi
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || ctx.Err() != nil {
			t.Fatalf("describe %s: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond) // metadata propagation has no event to wait on
	}
}

func durabilityOnce(ctx context.Context, adm *kadm.Client, topic string) (int16, string, error) {
	details, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = details[topic].Err
	}
	if err != nil {
		return 0, "", err
	}
	rf := int16(-1)
	for _, p := range details[topic].Partitions {
		if n := int16(len(p.Replicas)); rf < 0 || n < rf {
			rf = n
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, "", err
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, "", err
	}
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" {
			return rf, c.MaybeValue(), nil
		}
	}
	return 0, "", fmt.Errorf("%s: no min.insync.replicas in its configs", topic)
}

func newAdmin(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	adm, _ := newClients(t, brokers)
	return adm
}

func newClients(t *testing.T, brokers []string) (*kadm.Client, *kgo.Client) {
	t.Helper()
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return adm, cl
}

func uniqueTopics(t *testing.T, adm *kadm.Client, prefix string) wire.Topics {
	t.Helper()
	suffix := time.Now().Format("150405.000000")
	tp := wire.Topics{Events: prefix + ".events." + suffix, DLQ: prefix + ".dlq." + suffix, Audit: prefix + ".audit." + suffix}
	t.Cleanup(func() {
		_, _ = adm.DeleteTopics(context.Background(), tp.Events, tp.DLQ, tp.Audit)
	})
	return tp
}

// By default every topic gets min(3, brokers) replicas and, from three
// up, min.insync.replicas 2: on kfake (one broker) 1 and 1, on the
// Apache Kafka cluster 3 and 2.
func TestEnsureCreatesDurableTopicsByDefault(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	adm := newAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta, err := adm.ListBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantRF := int16(min(3, len(meta)))
	wantMin := map[bool]int{true: 2, false: 1}[wantRF >= 3]
	tp := uniqueTopics(t, adm, "dur")
	res, err := topics.Ensure(ctx, adm, topics.Config{Topics: tp, Partitions: 2, AuditPartitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Created || r.ReplicationFactor != wantRF || r.MinInsyncReplicas != wantMin || r.Weaker != "" {
			t.Errorf("%+v, want created with %d replicas, min.insync.replicas %d", r, wantRF, wantMin)
		}
		if rf, mi := durability(t, adm, r.Name); rf != wantRF || mi != strconv.Itoa(wantMin) {
			t.Errorf("%s on the broker: %d replicas, min.insync.replicas %s; want %d, %d", r.Name, rf, mi, wantRF, wantMin)
		}
	}
	// Run again: the same topics, as strong as asked, reported as such.
	res, err = topics.Ensure(ctx, adm, topics.Config{Topics: tp, Partitions: 2, AuditPartitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Created || r.ReplicationFactor != wantRF || r.MinInsyncReplicas != wantMin || r.Weaker != "" || r.Warning() != "" {
			t.Errorf("second run: %+v", r)
		}
	}
}

// A durability the cluster cannot give, or a retention under an hour, is
// refused before anything is created.
func TestEnsureRefusesImpossibleDurability(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	adm := newAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta, err := adm.ListBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tp := uniqueTopics(t, adm, "imp")
	for _, c := range []struct {
		cfg  topics.Config
		want string
	}{
		{topics.Config{ReplicationFactor: int16(len(meta) + 1)}, fmt.Sprintf("replication factor %d: the cluster has %d broker(s)", len(meta)+1, len(meta))},
		{topics.Config{ReplicationFactor: 1, MinInsyncReplicas: 2}, "min.insync.replicas 2 is more than the replication factor 1"},
		{topics.Config{MinInsyncReplicas: 4}, "min.insync.replicas 4 is more than the replication factor"},
		// With the replication factor left to the broker (-1), nothing
		// else compares the two: past the brokers, no acks=all write could
		// ever be acknowledged.
		{topics.Config{ReplicationFactor: -1, MinInsyncReplicas: len(meta) + 1}, fmt.Sprintf("min.insync.replicas %d: the cluster has %d broker(s)", len(meta)+1, len(meta))},
		{topics.Config{ReplicationFactor: -2}, "replication factor must be -1"},
		{topics.Config{MinInsyncReplicas: -1}, "min.insync.replicas must be at least 1"},
		{topics.Config{EventsRetention: 7 * time.Second}, "events retention must be at least 1h0m0s, got 7s"},
		{topics.Config{DLQRetention: -time.Hour}, "DLQ retention must be at least 1h0m0s, got -1h0m0s"},
		{topics.Config{AuditDeleteRetention: time.Minute}, "audit delete retention must be at least 1h0m0s, got 1m0s"},
	} {
		c.cfg.Topics = tp
		if _, err := topics.Ensure(ctx, adm, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
	details, err := adm.ListTopics(ctx, tp.Events, tp.DLQ, tp.Audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range details {
		if d.Err == nil {
			t.Errorf("%s was created by a refused config", d.Topic)
		}
	}
}

// A topic that exists with fewer replicas or a lower min.insync.replicas
// than asked is reported, naming the topic and its settings, and left as
// it is. It takes several brokers: the Apache Kafka cluster.
func TestEnsureReportsWeakerExistingTopics(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	adm := newAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if meta, err := adm.ListBrokers(ctx); err != nil {
		t.Fatal(err)
	} else if len(meta) < 3 {
		t.Skipf("%d broker(s): a topic weaker than the default needs 3 (HOOKSTREAM_TEST_KAFKA=apache)", len(meta))
	}
	tp := uniqueTopics(t, adm, "weak")
	one := kadm.StringPtr("1")
	// events: one replica; dlq: three replicas but one in sync is enough.
	for topic, rf := range map[string]int16{tp.Events: 1, tp.DLQ: 3} {
		if r, err := adm.CreateTopic(ctx, 2, rf, map[string]*string{"min.insync.replicas": one}, topic); err != nil || r.Err != nil {
			t.Fatalf("create %s: %v %v", topic, err, r.Err)
		}
	}
	res, err := topics.Ensure(ctx, adm, topics.Config{Topics: tp, Partitions: 2, AuditPartitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		tp.Events: "topic " + tp.Events + " exists with replication factor 1 and min.insync.replicas 1, weaker than asked: replication factor 1 < 3, min.insync.replicas 1 < 2",
		tp.DLQ:    "topic " + tp.DLQ + " exists with replication factor 3 and min.insync.replicas 1, weaker than asked: min.insync.replicas 1 < 2",
		tp.Audit:  "",
	}
	for _, r := range res {
		if got := r.Warning(); got != want[r.Name] {
			t.Errorf("%s: warning %q, want %q", r.Name, got, want[r.Name])
		}
		if r.Created != (r.Name == tp.Audit) {
			t.Errorf("%s: created %v", r.Name, r.Created)
		}
	}
	if rf, mi := durability(t, adm, tp.Events); rf != 1 || mi != "1" {
		t.Errorf("Ensure changed %s: %d replicas, min.insync.replicas %s", tp.Events, rf, mi)
	}
}

package topics_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/topics"
)

// TestEnsureRefusesMinInsyncAboveTheBrokers: with the replication factor
// left to the broker (-1), a min.insync.replicas above the number of
// brokers can never be met, whatever the broker's
// default.replication.factor: every acks=all write to the topics would be
// refused (NOT_ENOUGH_REPLICAS, the receiver answering 503 to everything).
// The contract refuses what the cluster cannot give before anything is
// created (docs/design.md, "Kafka").
func TestEnsureRefusesMinInsyncAboveTheBrokers(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	adm := newAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta, err := adm.ListBrokers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tp := uniqueTopics(t, adm, "mib")
	cfg := topics.Config{Topics: tp, ReplicationFactor: -1, MinInsyncReplicas: len(meta) + 1}
	if _, err := topics.Ensure(ctx, adm, cfg); err == nil {
		t.Errorf("%+v on %d broker(s): no error", cfg, len(meta))
	}
	details, err := adm.ListTopics(ctx, tp.Events, tp.DLQ, tp.Audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range details {
		if d.Err == nil {
			t.Errorf("%s was created with min.insync.replicas %d on %d broker(s)", d.Topic, cfg.MinInsyncReplicas, len(meta))
		}
	}
}

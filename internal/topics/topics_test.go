package topics_test

import (
	"context"
	"testing"
	"time"

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

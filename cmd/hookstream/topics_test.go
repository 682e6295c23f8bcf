package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
)

// runTopicsOn runs `hookstream topics` against brokers with the given
// extra flags and returns its exit code, stdout and stderr.
func runTopicsOn(t *testing.T, brokers []string, flags ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := append([]string{"topics", "--kafka-brokers", strings.Join(brokers, ","), "--partitions", "3"}, flags...)
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// On one broker (kfake, or with HOOKSTREAM_TEST_KAFKA=apache a one-node
// Apache Kafka cluster) the topics get one replica, one in sync; the
// output says so, and a second run finds them as asked, with no warning.
func TestTopicsCommandOnOneBroker(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	code, out, errOut := runTopicsOn(t, broker.Addrs())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"created hookstream.events (3 partitions, replication factor 1, min.insync.replicas 1)",
		"created hookstream.dlq (3 partitions, replication factor 1, min.insync.replicas 1)",
		"created hookstream.audit (12 partitions, replication factor 1, min.insync.replicas 1)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	code, out, errOut = runTopicsOn(t, broker.Addrs())
	if code != 0 || strings.Count(out, "exists  hookstream.") != 3 || errOut != "" {
		t.Errorf("second run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Asking for more replicas than there are brokers changes nothing.
	code, _, errOut = runTopicsOn(t, broker.Addrs(), "--replication-factor", "3")
	if code != 1 || !strings.Contains(errOut, "replication factor 3: the cluster has 1 broker(s)") {
		t.Errorf("--replication-factor 3 on one broker: exit %d, stderr %q", code, errOut)
	}
}

// On three brokers the topics get three replicas and min.insync.replicas
// 2, and one that exists weaker is reported on stderr with its settings.
func TestTopicsCommandWarnsOfWeakerTopics(t *testing.T) {
	t.Parallel()
	c := testenv.KafkaCluster(t, 3)
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: c.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"min.insync.replicas": kadm.StringPtr("1")}, "hookstream.events"); err != nil || r.Err != nil {
		t.Fatalf("create hookstream.events: %v %v", err, r.Err)
	}
	code, out, errOut := runTopicsOn(t, c.Brokers())
	if code != 1 {
		t.Fatalf("exit %d, want 1 (configs differ): %s", code, errOut)
	}
	for _, want := range []string{
		"exists  hookstream.events (3 partitions, replication factor 1, min.insync.replicas 1)",
		"created hookstream.dlq (3 partitions, replication factor 3, min.insync.replicas 2)",
		"created hookstream.audit (12 partitions, replication factor 3, min.insync.replicas 2)",
		"differs hookstream.events retention.ms: 604800000 (the broker's) -> 604800000\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	for _, want := range []string{
		"warning: topic hookstream.events exists with replication factor 1 and min.insync.replicas 1, weaker than asked: replication factor 1 < 3, min.insync.replicas 1 < 2\n",
		"warning: topic hookstream.events: min.insync.replicas 2 asked, but it has 1 replica(s): not set",
		"run with --apply to set them\n",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	// --apply sets the retention, not a min.insync.replicas that would
	// refuse every write, and exits 0: what is left is the operator's.
	code, out, errOut = runTopicsOn(t, c.Brokers(), "--apply")
	if code != 0 || !strings.Contains(out, "set     hookstream.events retention.ms: 604800000 (the broker's) -> 604800000\n") || strings.Contains(out, "set     hookstream.events min.insync") {
		t.Errorf("--apply: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// topicConfig reads one config of a topic on the broker.
func topicConfig(t *testing.T, adm *kadm.Client, topic, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		t.Fatalf("describe %s: %v", topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == key {
			return c.MaybeValue()
		}
	}
	return ""
}

// A topic created with old settings: `topics` shows what differs, changes
// nothing and exits 1; `topics --apply` sets it; a third run finds it as
// asked and exits 0.
func TestTopicsCommandApply(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t)
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, "hookstream.events"); err != nil || r.Err != nil {
		t.Fatalf("create hookstream.events: %v %v", err, r.Err)
	}
	code, out, errOut := runTopicsOn(t, broker.Addrs(), "--events-topic-retention", "48h")
	if code != 1 || !strings.Contains(errOut, "config(s) of existing topics differ from what the flags ask; nothing was changed: run with --apply to set them") {
		t.Errorf("without --apply: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"exists  hookstream.events (3 partitions",
		"created hookstream.dlq",
		"differs hookstream.events cleanup.policy: delete (the broker's) -> delete\n",
		"differs hookstream.events retention.ms: 3600000 -> 172800000\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("without --apply: stdout %q lacks %q", out, want)
		}
	}
	if got := topicConfig(t, adm, "hookstream.events", "retention.ms"); got != "3600000" {
		t.Errorf("without --apply, retention.ms became %s", got)
	}
	code, out, errOut = runTopicsOn(t, broker.Addrs(), "--events-topic-retention", "48h", "--apply")
	if code != 0 || !strings.Contains(out, "set     hookstream.events retention.ms: 3600000 -> 172800000\n") {
		t.Errorf("--apply: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := topicConfig(t, adm, "hookstream.events", "retention.ms"); got != "172800000" {
		t.Errorf("after --apply, retention.ms is %s", got)
	}
	code, out, errOut = runTopicsOn(t, broker.Addrs(), "--events-topic-retention", "48h")
	if code != 0 || strings.Contains(out, "differs") || errOut != "" {
		t.Errorf("after --apply: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// A retention under an hour, or not a duration, is refused naming the
// flag, and nothing is created.
func TestTopicsCommandRefusesBadRetention(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t)
	for _, c := range []struct {
		flags []string
		code  int
		want  string
	}{
		{[]string{"--events-topic-retention", "7s"}, 1, "events-topic-retention (HOOKSTREAM_EVENTS_TOPIC_RETENTION): must be at least 1h0m0s (e.g. 168h), got 7s"},
		{[]string{"--dlq-topic-retention", "-720h"}, 1, "dlq-topic-retention (HOOKSTREAM_DLQ_TOPIC_RETENTION): must be at least 1h0m0s"},
		{[]string{"--audit-delete-retention", "0s"}, 1, "audit-delete-retention (HOOKSTREAM_AUDIT_DELETE_RETENTION): must be at least 1h0m0s"},
		{[]string{"--events-topic-retention", "7 days"}, 2, `invalid value "7 days" for flag -events-topic-retention`},
	} {
		code, _, errOut := runTopicsOn(t, broker.Addrs(), c.flags...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.flags, code, errOut, c.code, c.want)
		}
	}
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	details, err := adm.ListTopics(ctx)
	if err != nil || len(details.Names()) != 0 {
		t.Errorf("topics after refused flags: %v, %v", details.Names(), err)
	}
}

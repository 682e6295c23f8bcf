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

// On one broker (kfake) the topics get one replica, one in sync; the
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
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"exists  hookstream.events (3 partitions, replication factor 1, min.insync.replicas 1)",
		"created hookstream.dlq (3 partitions, replication factor 3, min.insync.replicas 2)",
		"created hookstream.audit (12 partitions, replication factor 3, min.insync.replicas 2)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	want := "warning: topic hookstream.events exists with replication factor 1 and min.insync.replicas 1, weaker than asked: replication factor 1 < 3, min.insync.replicas 1 < 2\n"
	if errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
}

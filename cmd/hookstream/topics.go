package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/topics"
)

// runTopics creates the missing topics and reconciles the configs of the
// existing ones. Without --apply it changes no existing topic and exits 1
// when a config differs from what the flags ask, so that a deployment
// check can find drift; with --apply it sets those configs.
func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	var apply bool
	fs := newFlagSet("topics", stderr)
	s.registerKafka(fs)
	s.registerPartitions(fs)
	s.registerDurability(fs)
	fs.BoolVar(&apply, "apply", false, "set the configs of existing topics that differ from what the flags ask (partitions and replicas are never changed)")
	if _, err := s.parse(fs, args, stderr); err != nil {
		return err
	}
	adm, cl, err := kafka.NewAdmin(s.kafkaConfig("hookstream-topics"))
	if err != nil {
		return fmt.Errorf("kafka-brokers (HOOKSTREAM_KAFKA_BROKERS): %w", err)
	}
	defer cl.Close()
	diffs, err := createTopics(ctx, adm, s.topicsConfig(), stdout, func(msg string) {
		fmt.Fprintln(stderr, "warning:", msg)
	})
	if err != nil || len(diffs) == 0 {
		return err
	}
	if !apply {
		for _, d := range diffs {
			fmt.Fprintln(stdout, "differs", d)
		}
		return fmt.Errorf("%d config(s) of existing topics differ from what the flags ask; nothing was changed: run with --apply to set them", len(diffs))
	}
	if err := topics.Apply(ctx, cl, diffs); err != nil {
		return err
	}
	for _, d := range diffs {
		fmt.Fprintln(stdout, "set    ", d)
	}
	return nil
}

// ensureTopics creates the topics for dev and the tests, prints what it
// did on stdout and hands warn what differs in the existing ones: dev
// changes no existing topic (`hookstream topics --apply` does).
func ensureTopics(ctx context.Context, kcfg kafka.Config, cfg topics.Config, stdout io.Writer, warn func(string)) error {
	adm, cl, err := kafka.NewAdmin(kcfg)
	if err != nil {
		return fmt.Errorf("kafka-brokers (HOOKSTREAM_KAFKA_BROKERS): %w", err)
	}
	defer cl.Close()
	diffs, err := createTopics(ctx, adm, cfg, stdout, warn)
	for _, d := range diffs {
		warn(fmt.Sprintf("topic config %s differs from what the flags ask: `hookstream topics --apply` sets it", d))
	}
	return err
}

// createTopics creates the missing topics, prints each topic on stdout,
// hands warn what only an operator can change (weaker durability than
// asked: moving replicas with kafka-reassign-partitions; fewer partitions
// than asked), and returns the configs of existing topics that differ.
func createTopics(ctx context.Context, adm *kadm.Client, cfg topics.Config, stdout io.Writer, warn func(string)) ([]topics.Diff, error) {
	res, err := topics.Ensure(ctx, adm, cfg)
	if err != nil {
		return nil, err
	}
	for _, r := range res {
		verb := "exists "
		if r.Created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "%s %s (%d partitions, replication factor %s, min.insync.replicas %s)\n",
			verb, r.Name, r.Partitions, orBroker(int(r.ReplicationFactor), -1), orBroker(r.MinInsyncReplicas, 0))
		if w := r.Warning(); w != "" {
			warn(w)
		}
	}
	drift, err := topics.Check(ctx, adm, cfg)
	if err != nil {
		return nil, err
	}
	for _, m := range drift.Manual {
		warn(m)
	}
	return drift.Diffs, nil
}

// orBroker prints a setting the broker chose as such.
func orBroker(v, unknown int) string {
	if v == unknown {
		return "the broker's"
	}
	return strconv.Itoa(v)
}

// topicRetention is how long the topics keep records, for the commands
// that create topics (registered with registerDurability).
type topicRetention struct {
	events, dlq, auditDelete time.Duration
}

func (r *topicRetention) register(fs *flagSet) {
	fs.ageVar(&r.events, "events-topic-retention", "HOOKSTREAM_EVENTS_TOPIC_RETENTION", 7*24*time.Hour,
		"retention.ms of hookstream.events: the longest consumer outage that loses no accepted event")
	fs.ageVar(&r.dlq, "dlq-topic-retention", "HOOKSTREAM_DLQ_TOPIC_RETENTION", 30*24*time.Hour,
		"retention.ms of hookstream.dlq")
	fs.ageVar(&r.auditDelete, "audit-delete-retention", "HOOKSTREAM_AUDIT_DELETE_RETENTION", 7*24*time.Hour,
		"delete.retention.ms of hookstream.audit: how long a tombstone stays for a reader that is behind")
}

func (r topicRetention) validate() error {
	for _, f := range []struct {
		flag, env string
		d         time.Duration
	}{
		{"events-topic-retention", "HOOKSTREAM_EVENTS_TOPIC_RETENTION", r.events},
		{"dlq-topic-retention", "HOOKSTREAM_DLQ_TOPIC_RETENTION", r.dlq},
		{"audit-delete-retention", "HOOKSTREAM_AUDIT_DELETE_RETENTION", r.auditDelete},
	} {
		if f.d < topics.MinRetention {
			return fmt.Errorf("%s (%s): must be at least %s (e.g. 168h), got %s", f.flag, f.env, topics.MinRetention, f.d)
		}
	}
	return nil
}

func (r topicRetention) apply(cfg topics.Config) topics.Config {
	cfg.EventsRetention, cfg.DLQRetention, cfg.AuditDeleteRetention = r.events, r.dlq, r.auditDelete
	return cfg
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/migrate"
	"github.com/hookstream/hookstream/internal/topics"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	fs := newFlagSet("migrate", stderr)
	s.registerDatabase(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	if s.databaseURL == "" {
		return errors.New("database-url (HOOKSTREAM_DATABASE_URL): required")
	}
	applied, err := migrate.Up(ctx, s.databaseURL)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
		return nil
	}
	fmt.Fprintf(stdout, "applied migrations %v\n", applied)
	return nil
}

func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	fs := newFlagSet("topics", stderr)
	s.registerKafka(fs)
	s.registerPartitions(fs)
	s.registerDurability(fs)
	if _, err := s.parse(fs, args, stderr); err != nil {
		return err
	}
	return ensureTopics(ctx, s.kafkaConfig("hookstream-topics"), s.topicsConfig(), stdout, func(msg string) {
		fmt.Fprintln(stderr, "warning:", msg)
	})
}

// ensureTopics creates the topics, prints what it did on stdout and hands
// each existing topic with weaker durability than asked to warn: the
// operator decides whether to move its replicas (kafka-reassign-partitions)
// or raise its min.insync.replicas (kafka-configs); hookstream does not.
func ensureTopics(ctx context.Context, kcfg kafka.Config, cfg topics.Config, stdout io.Writer, warn func(string)) error {
	adm, cl, err := kafka.NewAdmin(kcfg)
	if err != nil {
		return fmt.Errorf("kafka-brokers (HOOKSTREAM_KAFKA_BROKERS): %w", err)
	}
	defer cl.Close()
	res, err := topics.Ensure(ctx, adm, cfg)
	if err != nil {
		return err
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
	return nil
}

// orBroker prints a setting the broker chose as such.
func orBroker(v, unknown int) string {
	if v == unknown {
		return "the broker's"
	}
	return strconv.Itoa(v)
}

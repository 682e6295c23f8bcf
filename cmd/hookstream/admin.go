package main

import (
	"context"
	"errors"
	"fmt"
	"io"

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
	var replication int
	fs.intVar(&replication, "replication-factor", "HOOKSTREAM_REPLICATION_FACTOR", -1, "replication factor of new topics (-1: the broker's default)")
	if _, err := s.parse(fs, args, stderr); err != nil {
		return err
	}
	return ensureTopics(ctx, s.kafkaConfig("hookstream-topics"), int32(s.partitions), int16(replication), stdout)
}

func ensureTopics(ctx context.Context, kcfg kafka.Config, partitions int32, replication int16, stdout io.Writer) error {
	adm, cl, err := kafka.NewAdmin(kcfg)
	if err != nil {
		return fmt.Errorf("kafka-brokers (HOOKSTREAM_KAFKA_BROKERS): %w", err)
	}
	defer cl.Close()
	res, err := topics.Ensure(ctx, adm, topics.Config{Partitions: partitions, ReplicationFactor: replication})
	if err != nil {
		return err
	}
	for _, r := range res {
		verb := "exists "
		if r.Created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "%s %s (%d partitions)\n", verb, r.Name, r.Partitions)
	}
	return nil
}

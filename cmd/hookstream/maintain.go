package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/retention"
)

// runMaintain runs one retention round (internal/retention) and prints
// what it did: for operators who run it from cron, with --retention-job=false
// on the consumers. Consumers that run the job take turns with it.
func runMaintain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	var keep, keepAudit time.Duration
	fs := newFlagSet("maintain", stderr)
	s.registerDatabase(fs)
	s.registerKafka(fs)
	s.registerLog(fs, "text")
	registerEventsRetention(fs, &keep)
	registerAuditRetention(fs, &keepAudit)
	log, err := s.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	if s.databaseURL == "" {
		return errors.New("database-url (HOOKSTREAM_DATABASE_URL): required")
	}
	if err := errors.Join(checkEventsRetention(keep), checkAuditRetention(keepAudit)); err != nil {
		return err
	}
	pool, err := newPool(ctx, s.databaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg := retention.Config{Pool: pool, Retention: keep, AuditRetention: keepAudit, Logger: log}
	// Without brokers, audit_log partitions are made ahead but none is
	// dropped: its tombstones could not be written (the round fails when
	// one is due).
	if len(s.brokers()) > 0 {
		producer, err := kafka.NewProducer(s.kafkaConfig("hookstream-maintain"))
		if err != nil {
			return err
		}
		defer producer.Close()
		cfg.Tombstones = producer
	}
	rep, err := retention.RunNow(ctx, cfg)
	for _, p := range rep.AuditCreated {
		fmt.Fprintf(stdout, "created audit_log partition %s\n", p)
	}
	for _, p := range rep.AuditDropped {
		fmt.Fprintf(stdout, "dropped audit_log partition %s\n", p)
	}
	if rep.Tombstones > 0 {
		fmt.Fprintf(stdout, "wrote %d tombstones on the audit topic\n", rep.Tombstones)
	}
	if rep.AuditUnfinished != "" {
		fmt.Fprintf(stdout, "the tombstones of audit_log partition %s go on at the next round\n", rep.AuditUnfinished)
	}
	// What the round did is printed even when it failed later (the
	// audit_log step comes last): an opened or dropped bucket stays so.
	switch {
	case rep.Skipped:
		fmt.Fprintln(stdout, "another process is running a retention round; nothing done")
		return err
	case rep.Opened:
		fmt.Fprintf(stdout, "opened events bucket %d\n", rep.Current)
	case err == nil:
		fmt.Fprintf(stdout, "events bucket %d is current\n", rep.Current)
	}
	for _, b := range rep.Dropped {
		fmt.Fprintf(stdout, "dropped events bucket %d\n", b)
	}
	if rep.Moved > 0 {
		fmt.Fprintf(stdout, "moved %d unfinished events into bucket %d\n", rep.Moved, rep.Current)
	}
	return err
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hookstream/hookstream/audit"
)

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "tail" && args[0] != "verify") {
		fmt.Fprintln(stderr, "usage: hookstream audit tail [--follow] [--event-id ID] [--customer ID]\n       hookstream audit verify [--since DURATION]")
		return errUsage
	}
	var s settings
	fs := newFlagSet("audit "+args[0], stderr)
	s.registerKafka(fs)
	if args[0] == "tail" {
		var follow bool
		var eventID, customer string
		fs.BoolVar(&follow, "follow", false, "keep printing new records until interrupted")
		fs.StringVar(&eventID, "event-id", "", "only records of this event id")
		fs.StringVar(&customer, "customer", "", "only records of this customer id")
		if err := s.parseFlags(fs, args[1:]); err != nil {
			return err
		}
		return audit.Tail(ctx, audit.TailOptions{Brokers: s.brokers(), KafkaOpts: s.kafkaOpts, Follow: follow, EventID: eventID, CustomerID: customer}, stdout)
	}
	var since time.Duration
	s.registerDatabase(fs)
	fs.DurationVar(&since, "since", 24*time.Hour, "compare records of this window (keep it within the topic's min.compaction.lag.ms)")
	if err := s.parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if s.databaseURL == "" {
		return errors.New("database-url (HOOKSTREAM_DATABASE_URL): required")
	}
	pool, err := newPool(ctx, s.databaseURL, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	rep, err := audit.Verify(ctx, pool, s.brokers(), "", time.Now().Add(-since), s.kafkaOpts...)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("topic and table disagree: %d missing from the table, %d missing from the topic", len(rep.MissingFromTable), len(rep.MissingFromTopic))
	}
	return nil
}

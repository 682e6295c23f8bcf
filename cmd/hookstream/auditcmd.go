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
		fmt.Fprintln(stderr, "usage: hookstream audit tail [--follow] [--event-id ID] [--customer ID]\n       hookstream audit verify [--since DURATION] [--group GROUP]")
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
	var group string
	s.registerDatabase(fs)
	fs.DurationVar(&since, "since", 24*time.Hour, "check records and events of this window (keep it within the audit topic's min.compaction.lag.ms)")
	fs.stringVar(&group, "group", "HOOKSTREAM_CONSUMER_GROUP", "hookstream", "consumer group of hookstream.events: the records it has processed must have their ACCEPTED decision")
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
	rep, err := audit.Verify(ctx, audit.VerifyConfig{Pool: pool, Brokers: s.brokers(), KafkaOpts: s.kafkaOpts, Group: group, Since: time.Now().Add(-since)})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("audit trail incomplete: %d records missing from the table, %d from the topic, %d decisions missing (missing_decisions)",
			len(rep.MissingFromTable), len(rep.MissingFromTopic), len(rep.MissingDecisions))
	}
	return nil
}

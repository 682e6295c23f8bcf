package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/wire"
)

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	var source, eventID, customer, status, reason string
	var since time.Duration
	fs := newFlagSet("replay", stderr)
	s.registerKafka(fs)
	s.registerDatabase(fs)
	fs.StringVar(&source, "source", "", "source of the event (with --event-id)")
	fs.StringVar(&eventID, "event-id", "", "replay this event")
	fs.StringVar(&customer, "customer", "", "replay this customer's blocking (FAILED/DEAD) events, oldest first")
	fs.StringVar(&status, "status", "", "replay every event with this status: FAILED or DEAD")
	fs.DurationVar(&since, "since", 0, "with --status or --customer: only events updated within this window")
	fs.StringVar(&reason, "reason", "replayed from the command line", "reason recorded in the audit trail")
	fs.stringVar(&s.instance, "instance", "HOOKSTREAM_INSTANCE", defaultInstance(), "name of this process in audit records")
	if err := s.parseFlags(fs, args); err != nil {
		return err
	}
	selectors := 0
	for _, v := range []string{eventID, customer, status} {
		if v != "" {
			selectors++
		}
	}
	switch {
	case selectors != 1:
		return errors.New("give exactly one of --event-id (with --source), --customer, --status")
	case eventID != "" && source == "":
		return errors.New("--event-id needs --source")
	case status != "" && status != "FAILED" && status != "DEAD":
		return fmt.Errorf("--status: %q is not FAILED or DEAD", status)
	case s.databaseURL == "":
		return errors.New("database-url (HOOKSTREAM_DATABASE_URL): required")
	}
	pool, err := newPool(ctx, s.databaseURL, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg := consumer.ReplayConfig{Pool: pool, Audit: audit.Writer{}, Actor: wire.ActorAdmin, Instance: s.instance}

	type key struct{ source, id string }
	var targets []key
	if eventID != "" {
		targets = []key{{source, eventID}}
	} else {
		var after *time.Time
		if since > 0 {
			t := time.Now().Add(-since)
			after = &t
		}
		rows, err := pool.Query(ctx, `SELECT source, event_id FROM events
WHERE status IN ('FAILED', 'DEAD') AND ($1 = '' OR customer_id = $1) AND ($2 = '' OR status = $2)
  AND ($3::timestamptz IS NULL OR updated_at >= $3)
ORDER BY kafka_partition, kafka_offset`, customer, status, after)
		if err != nil {
			return err
		}
		var k key
		if _, err := pgx.ForEachRow(rows, []any{&k.source, &k.id}, func() error { targets = append(targets, k); return nil }); err != nil {
			return err
		}
	}
	if len(targets) == 0 {
		return errors.New("no FAILED or DEAD event matches")
	}
	for _, k := range targets {
		if err := consumer.Replay(ctx, cfg, k.source, k.id, reason); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed %s/%s\n", k.source, k.id)
	}
	return nil
}

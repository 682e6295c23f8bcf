// Command hookstream is the webhook ingestion engine: one binary whose
// subcommands are its roles (see docs/design.md, "Command line").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "run everything in one process on an embedded broker and a private PostgreSQL", runDev},
		{"serve", "run the webhook receiver (stateless; run many)", runServe},
		{"consume", "run a consumer group member, the audit relay and the audit sink (up to one per partition)", runConsume},
		{"replay", "re-drive FAILED or DEAD events by id, customer or status", runReplay},
		{"audit", "audit tail: print audit records as JSON lines; audit verify: check the audit trail against the events", runAudit},
		{"bench", "post signed webhooks to a receiver and summarise the answers", runBench},
		{"migrate", "apply the database migrations", runMigrate},
		{"maintain", "run one events retention round: open the next events bucket when the current one is due, drop those closed longer than --events-retention ago (consumers do it too unless --retention-job=false)", runMaintain},
		{"topics", "create the Kafka topics with their configs; show what differs in existing ones, set it with --apply", runTopics},
		{"healthcheck", "exit 0 when a hookstream HTTP endpoint answers 2xx (container health checks)", runHealthcheck},
		{"version", "print the version", func(_ context.Context, _ []string, stdout, _ io.Writer) error {
			fmt.Fprintln(stdout, "hookstream", version)
			return nil
		}},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tuneGC()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(stderr, "hookstream %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "hookstream: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// errUsage: the flag package already printed what was wrong.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "hookstream — reliable webhook ingestion on Kafka and PostgreSQL")
	fmt.Fprintln(w, "\nUsage: hookstream <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'hookstream <command> -h' for the flags of a command.")
	fmt.Fprintln(w, "Every flag can also be set by its HOOKSTREAM_* environment variable (shown in -h).")
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hookstream/hookstream/internal/loadgen"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBench(args, stderr)
	if err != nil {
		return err
	}
	c := o.load
	c.Progress = stderr
	start := time.Now()
	sum, err := loadgen.Run(ctx, c)
	if err != nil {
		return err
	}
	var ver *loadgen.Verification
	if o.verify {
		pool, err := newPool(ctx, o.databaseURL, 0)
		if err != nil {
			return err
		}
		defer pool.Close()
		fmt.Fprintln(stderr, "verifying…")
		ver, err = loadgen.Verify(ctx, loadgen.VerifyConfig{Pool: pool, Brokers: o.brokers(), KafkaOpts: o.kafkaOpts, Source: c.Source, Wait: o.wait, Since: start}, sum)
		if err != nil {
			return err
		}
	}
	if o.asJSON {
		out := struct {
			*loadgen.Summary
			Verify *loadgen.Verification `json:"verify,omitempty"`
		}{sum, ver}
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return err
		}
	} else {
		printLoad(stdout, sum)
		printVerification(stdout, ver)
	}
	if ver != nil && !ver.OK {
		return fmt.Errorf("verification failed: %d violations", len(ver.Violations))
	}
	return nil
}

// benchOptions are bench's flags.
type benchOptions struct {
	settings
	load           loadgen.Config
	asJSON, verify bool
	wait           time.Duration
}

func parseBench(args []string, stderr io.Writer) (*benchOptions, error) {
	o := &benchOptions{}
	c := &o.load
	fs := newFlagSet("bench", stderr)
	fs.StringVar(&c.Target, "target", "http://127.0.0.1:8080", "base URL of the receiver")
	fs.StringVar(&c.Source, "source", "generic", "source to post to")
	fs.StringVar(&c.Scheme, "scheme", "hmac-sha256", "signature scheme of the source")
	fs.stringVar(&c.Secret, "secret", "HOOKSTREAM_GENERIC_SECRET", "", "the source's secret")
	fs.StringVar(&c.Header, "signature-header", "X-Signature", "hmac-sha256 header")
	fs.IntVar(&c.Customers, "customers", 100, "distinct customers")
	fs.IntVar(&c.Events, "events", 0, "events to send (or --duration)")
	fs.DurationVar(&c.Duration, "duration", 0, "how long to send (or --events)")
	fs.IntVar(&c.Concurrency, "concurrency", 64, "connections")
	fs.Float64Var(&c.Rate, "rate", 0, "events per second, open loop (0: as fast as the connections allow)")
	fs.IntVar(&c.PayloadBytes, "payload-bytes", 256, "padding in each payload")
	fs.Float64Var(&c.Duplicates, "duplicates", 0, "fraction of requests re-sending an earlier event id")
	fs.Float64Var(&c.Bad, "bad", 0, "fraction of requests with a bad signature or body")
	fs.BoolVar(&o.asJSON, "json", false, "print the summary as one JSON document")
	fs.BoolVar(&o.verify, "verify", false, "after the load, check in PostgreSQL and the audit trail what became of every event (HOOKSTREAM_DATABASE_URL, HOOKSTREAM_KAFKA_BROKERS)")
	fs.DurationVar(&o.wait, "verify-wait", 5*time.Minute, "how long --verify waits for processing to catch up")
	o.registerKafka(fs)
	o.registerDatabase(fs)
	if err := o.parseFlags(fs, args); err != nil {
		return nil, err
	}
	if c.Secret == "" && c.Scheme != "none" {
		return nil, errors.New("secret (HOOKSTREAM_GENERIC_SECRET): required to sign (dev prints it)")
	}
	if o.verify && (o.databaseURL == "" || len(o.brokers()) == 0) {
		return nil, errors.New("--verify needs HOOKSTREAM_DATABASE_URL and HOOKSTREAM_KAFKA_BROKERS")
	}
	return o, nil
}

// printLoad writes the summary of the load as text.
func printLoad(stdout io.Writer, sum *loadgen.Summary) {
	fmt.Fprintf(stdout, "requests     %d in %s (%.0f req/s), %d bytes sent\n", sum.Requests, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Millisecond), sum.RequestsPerSecond, sum.BytesSent)
	codes := make([]string, 0, len(sum.StatusCounts))
	for k := range sum.StatusCounts {
		codes = append(codes, k)
	}
	sort.Strings(codes)
	fmt.Fprint(stdout, "statuses    ")
	for _, k := range codes {
		fmt.Fprintf(stdout, " %s=%d", k, sum.StatusCounts[k])
	}
	l := sum.LatencyMs
	fmt.Fprintf(stdout, "\nlatency ms   p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n", l.P50, l.P90, l.P99, l.P999, l.Max)
}

// printVerification writes what --verify found as text (nothing without
// it).
func printVerification(stdout io.Writer, ver *loadgen.Verification) {
	if ver == nil {
		return
	}
	fmt.Fprintf(stdout, "verify       accepted %d, processed %d, rejected %d, audit topic %d / table %d records\n", ver.Accepted, ver.Processed, ver.Rejected, ver.Audit.TopicRecords, ver.Audit.TableRecords)
	e := ver.EndToEndMs
	fmt.Fprintf(stdout, "202->PROCESSED ms  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", e.P50, e.P90, e.P99, e.P999, e.Max)
	for _, v := range ver.Violations {
		fmt.Fprintln(stdout, "  VIOLATION", v)
	}
	if ver.OK {
		fmt.Fprintln(stdout, "verify       OK")
	}
}

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

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var c loadgen.Config
	var asJSON, verify bool
	var s settings
	var wait time.Duration
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
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON document")
	fs.BoolVar(&verify, "verify", false, "after the load, check in PostgreSQL and the audit trail what became of every event (HOOKSTREAM_DATABASE_URL, HOOKSTREAM_KAFKA_BROKERS)")
	fs.DurationVar(&wait, "verify-wait", 5*time.Minute, "how long --verify waits for processing to catch up")
	s.registerKafka(fs)
	s.registerDatabase(fs)
	if err := s.parseFlags(fs, args); err != nil {
		return err
	}
	if c.Secret == "" && c.Scheme != "none" {
		return errors.New("secret (HOOKSTREAM_GENERIC_SECRET): required to sign (dev prints it)")
	}
	if verify && (s.databaseURL == "" || len(s.brokers()) == 0) {
		return errors.New("--verify needs HOOKSTREAM_DATABASE_URL and HOOKSTREAM_KAFKA_BROKERS")
	}
	c.Progress = stderr
	start := time.Now()
	sum, err := loadgen.Run(ctx, c)
	if err != nil {
		return err
	}
	var ver *loadgen.Verification
	if verify {
		pool, err := newPool(ctx, s.databaseURL, 0)
		if err != nil {
			return err
		}
		defer pool.Close()
		fmt.Fprintln(stderr, "verifying…")
		ver, err = loadgen.Verify(ctx, loadgen.VerifyConfig{Pool: pool, Brokers: s.brokers(), KafkaOpts: s.kafkaOpts, Source: c.Source, Wait: wait, Since: start}, sum)
		if err != nil {
			return err
		}
	}
	failed := ver != nil && !ver.OK
	if asJSON {
		out := struct {
			*loadgen.Summary
			Verify *loadgen.Verification `json:"verify,omitempty"`
		}{sum, ver}
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return err
		}
		if failed {
			return fmt.Errorf("verification failed: %d violations", len(ver.Violations))
		}
		return nil
	}
	defer func() {
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
	}()
	if failed {
		defer func() { err = fmt.Errorf("verification failed: %d violations", len(ver.Violations)) }()
	}
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
	return nil
}

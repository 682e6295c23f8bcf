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
	var c loadgen.Config
	var asJSON bool
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
	if err := fs.parse(args); err != nil {
		return err
	}
	if c.Secret == "" && c.Scheme != "none" {
		return errors.New("secret (HOOKSTREAM_GENERIC_SECRET): required to sign (dev prints it)")
	}
	c.Progress = stderr
	sum, err := loadgen.Run(ctx, c)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(sum)
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

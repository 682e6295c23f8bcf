// Package loadgen is `hookstream bench`'s load generator: it posts signed
// webhooks with per-customer sequence numbers, closed-loop (a fixed number
// of connections) or open-loop (a fixed arrival rate, so that a slow server
// cannot hide latency by slowing the generator: coordinated omission), and
// summarises what came back.
package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookstream/hookstream/ingest/signature"
)

// Config describes a run.
type Config struct {
	Target       string // base URL, e.g. http://127.0.0.1:8080
	Source       string // default "generic"
	Scheme       string // default "hmac-sha256"
	Secret       string
	Header       string // hmac-sha256 header, default X-Signature
	Customers    int    // default 100
	Events       int    // stop after this many events (0: use Duration)
	Duration     time.Duration
	Concurrency  int     // connections, default 64
	Rate         float64 // events/s; 0 = closed loop
	PayloadBytes int     // padding in the payload, default 256
	Duplicates   float64 // fraction re-sent with the same id
	Bad          float64 // fraction sent with a bad signature or body
	Progress     io.Writer
	RunID        string // prefix of event ids; default a timestamp
}

// Sent is one request's outcome, kept for verification.
type Sent struct {
	EventID  string
	Customer string
	Seq      int
	Kind     string // "new", "duplicate", "bad"
	Status   int    // 0: transport error
}

// Summary is what a run produced.
type Summary struct {
	Requests          int            `json:"requests"`
	Seconds           float64        `json:"seconds"`
	RequestsPerSecond float64        `json:"requests_per_second"`
	StatusCounts      map[string]int `json:"status_counts"`
	LatencyMs         Percentiles    `json:"latency_ms"`
	BytesSent         int64          `json:"bytes_sent"`
	Sent              []Sent         `json:"-"`
}

// Percentiles of latency in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func (c *Config) defaults() error {
	if c.Target == "" {
		return fmt.Errorf("target is required")
	}
	if c.Source == "" {
		c.Source = "generic"
	}
	if c.Scheme == "" {
		c.Scheme = signature.SchemeHMACSHA256
	}
	if c.Header == "" {
		c.Header = "X-Signature"
	}
	if c.Customers <= 0 {
		c.Customers = 100
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.PayloadBytes < 0 {
		c.PayloadBytes = 0
	} else if c.PayloadBytes == 0 {
		c.PayloadBytes = 256
	}
	if c.Events <= 0 && c.Duration <= 0 {
		return fmt.Errorf("give events or duration")
	}
	if c.Duplicates < 0 || c.Duplicates > 1 || c.Bad < 0 || c.Bad > 1 {
		return fmt.Errorf("duplicates and bad are fractions between 0 and 1")
	}
	if c.RunID == "" {
		c.RunID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return nil
}

// plan is the next request to send.
type job struct {
	worker  int // a customer's requests all go through one connection, in order
	sent    Sent
	body    []byte
	headers http.Header
	due     time.Time // open loop: when it should have been sent
}

// Run sends the load and returns the summary.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	signer, err := signature.NewSigner(signature.Config{Scheme: cfg.Scheme, Secrets: []string{cfg.Secret}, Header: cfg.Header})
	if err != nil {
		return nil, err
	}
	pad := strings.Repeat("x", cfg.PayloadBytes)
	seqs := make([]int, cfg.Customers)
	var previous []Sent // ids already sent, for duplicates
	rng := rand.New(rand.NewPCG(1, 2))
	n := 0
	next := func() (job, bool) {
		if cfg.Events > 0 && n >= cfg.Events {
			return job{}, false
		}
		n++
		r := rng.Float64()
		var s Sent
		switch {
		case r < cfg.Bad:
			s = Sent{EventID: fmt.Sprintf("%s-bad-%d", cfg.RunID, n), Customer: "cus_" + strconv.Itoa(rng.IntN(cfg.Customers)), Seq: -1, Kind: "bad"}
		case r < cfg.Bad+cfg.Duplicates && len(previous) > 0:
			s = previous[rng.IntN(len(previous))]
			s.Kind = "duplicate"
		default:
			c := rng.IntN(cfg.Customers)
			s = Sent{EventID: fmt.Sprintf("%s-%d", cfg.RunID, n), Customer: "cus_" + strconv.Itoa(c), Seq: seqs[c], Kind: "new"}
			seqs[c]++
			previous = append(previous, s)
		}
		cust, _ := strconv.Atoi(strings.TrimPrefix(s.Customer, "cus_"))
		body := []byte(fmt.Sprintf(`{"event_id":%q,"customer_id":%q,"event_type":"bench.event","payload":{"seq":%d,"pad":%q}}`, s.EventID, s.Customer, s.Seq, pad))
		h := signer.Sign(s.EventID, body, time.Now())
		h.Set("Content-Type", "application/json")
		if s.Kind == "bad" {
			if n%2 == 0 {
				body = append(body, '}') // signed, then broken: the signature no longer matches
			} else {
				h = http.Header{"Content-Type": {"application/json"}, cfg.Header: {strings.Repeat("0", 64)}}
			}
		}
		return job{worker: cust % cfg.Concurrency, sent: s, body: body, headers: h}, true
	}

	// One queue per connection: a customer's events are sent one after the
	// other, each after the previous one's answer, as a provider does, so
	// their order in Kafka is their sequence order.
	queues := make([]chan job, cfg.Concurrency)
	for i := range queues {
		queues[i] = make(chan job, 4)
	}
	runCtx := ctx
	var cancel context.CancelFunc = func() {}
	if cfg.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
	}
	defer cancel()
	start := time.Now()
	go func() {
		defer func() {
			for _, q := range queues {
				close(q)
			}
		}()
		interval := time.Duration(0)
		if cfg.Rate > 0 {
			interval = time.Duration(float64(time.Second) / cfg.Rate)
		}
		due := start
		for {
			j, ok := next()
			if !ok {
				return
			}
			if interval > 0 {
				due = due.Add(interval)
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-runCtx.Done():
						return
					}
				}
				j.due = due
			}
			select {
			case queues[j.worker] <- j:
			case <-runCtx.Done():
				return
			}
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency}, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var sent []Sent
	var lat []time.Duration
	var bytesSent atomic.Int64
	var done atomic.Int64
	var wg sync.WaitGroup
	url := strings.TrimRight(cfg.Target, "/") + "/webhooks/" + cfg.Source
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range queues[w] {
				t0 := time.Now()
				if !j.due.IsZero() {
					t0 = j.due // open loop: latency counts from when it was due
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(j.body))
				if err != nil {
					continue
				}
				req.Header = j.headers
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					j.sent.Status = resp.StatusCode
				}
				d := time.Since(t0)
				bytesSent.Add(int64(len(j.body)))
				done.Add(1)
				mu.Lock()
				sent = append(sent, j.sent)
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	if cfg.Progress != nil {
		stopProgress := make(chan struct{})
		defer close(stopProgress)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			last := int64(0)
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					d := done.Load()
					fmt.Fprintf(cfg.Progress, "\r%8d requests  %7d req/s  %s", d, d-last, time.Since(start).Round(time.Second))
					last = d
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	sum := &Summary{Requests: len(sent), Seconds: el.Seconds(), StatusCounts: map[string]int{}, BytesSent: bytesSent.Load(), Sent: sent}
	sum.RequestsPerSecond = float64(len(sent)) / el.Seconds()
	for _, s := range sent {
		k := strconv.Itoa(s.Status)
		if s.Status == 0 {
			k = "error"
		}
		sum.StatusCounts[k]++
	}
	sum.LatencyMs = percentiles(lat)
	return sum, nil
}

// percentiles of every sample (sorted in place), in milliseconds.
func percentiles(lat []time.Duration) Percentiles {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	return Percentiles{P50: q(.5), P90: q(.9), P99: q(.99), P999: q(.999), Max: q(1)}
}

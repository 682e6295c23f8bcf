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
	g := &generator{cfg: &cfg, signer: signer, pad: strings.Repeat("x", cfg.PayloadBytes),
		seqs: make([]int, cfg.Customers), rng: rand.New(rand.NewPCG(1, 2))}
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
	go g.feed(runCtx, queues, start)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency}, Timeout: 30 * time.Second}
	rec := &recorder{}
	var wg sync.WaitGroup
	url := strings.TrimRight(cfg.Target, "/") + "/webhooks/" + cfg.Source
	for w := range cfg.Concurrency {
		wg.Go(func() {
			for j := range queues[w] {
				rec.add(j.sent, post(ctx, client, url, &j), len(j.body))
			}
		})
	}
	if cfg.Progress != nil {
		stopProgress := make(chan struct{})
		defer close(stopProgress)
		go rec.progress(cfg.Progress, start, stopProgress)
	}
	wg.Wait()
	el := time.Since(start)
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	return rec.summary(el), nil
}

// generator makes the requests of a run: new events in each customer's
// sequence, duplicates of events already made, and bad requests, in the
// proportions of cfg, the same for every run of a seed.
type generator struct {
	cfg      *Config
	signer   signature.Signer
	pad      string
	seqs     []int  // each customer's next sequence number
	previous []Sent // events already made, for duplicates
	rng      *rand.Rand
	n        int
}

// next is the next request, false when cfg.Events are made.
func (g *generator) next() (job, bool) {
	cfg := g.cfg
	if cfg.Events > 0 && g.n >= cfg.Events {
		return job{}, false
	}
	g.n++
	n := g.n
	r := g.rng.Float64()
	var s Sent
	switch {
	case r < cfg.Bad:
		s = Sent{EventID: fmt.Sprintf("%s-bad-%d", cfg.RunID, n), Customer: "cus_" + strconv.Itoa(g.rng.IntN(cfg.Customers)), Seq: -1, Kind: "bad"}
	case r < cfg.Bad+cfg.Duplicates && len(g.previous) > 0:
		s = g.previous[g.rng.IntN(len(g.previous))]
		s.Kind = "duplicate"
	default:
		c := g.rng.IntN(cfg.Customers)
		s = Sent{EventID: fmt.Sprintf("%s-%d", cfg.RunID, n), Customer: "cus_" + strconv.Itoa(c), Seq: g.seqs[c], Kind: "new"}
		g.seqs[c]++
		g.previous = append(g.previous, s)
	}
	cust, _ := strconv.Atoi(strings.TrimPrefix(s.Customer, "cus_"))
	body := []byte(fmt.Sprintf(`{"event_id":%q,"customer_id":%q,"event_type":"bench.event","payload":{"seq":%d,"pad":%q}}`, s.EventID, s.Customer, s.Seq, g.pad))
	h := g.signer.Sign(s.EventID, body, time.Now())
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

// feed queues the requests to their workers, at cfg.Rate from start if
// set (open loop: each stamped with when it was due), until they are made
// or ctx ends, then closes the queues.
func (g *generator) feed(ctx context.Context, queues []chan job, start time.Time) {
	defer func() {
		for _, q := range queues {
			close(q)
		}
	}()
	interval := time.Duration(0)
	if g.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / g.cfg.Rate)
	}
	due := start
	for {
		j, ok := g.next()
		if !ok {
			return
		}
		if interval > 0 {
			due = due.Add(interval)
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			j.due = due
		}
		select {
		case queues[j.worker] <- j:
		case <-ctx.Done():
			return
		}
	}
}

// post sends j and records its answer's status in j.sent (none on a
// transport error), and returns its latency: from when it was due, in an
// open loop, else from when it was sent.
func post(ctx context.Context, client *http.Client, url string, j *job) time.Duration {
	t0 := time.Now()
	if !j.due.IsZero() {
		t0 = j.due
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(j.body))
	if err != nil {
		return time.Since(t0)
	}
	req.Header = j.headers
	resp, err := client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		j.sent.Status = resp.StatusCode
	}
	return time.Since(t0)
}

// recorder collects what the workers sent and how long each took.
type recorder struct {
	mu        sync.Mutex
	sent      []Sent
	lat       []time.Duration
	bytesSent atomic.Int64
	done      atomic.Int64
}

func (r *recorder) add(s Sent, d time.Duration, bytes int) {
	r.bytesSent.Add(int64(bytes))
	r.done.Add(1)
	r.mu.Lock()
	r.sent = append(r.sent, s)
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

// progress writes the requests done and their rate to w every second
// until stop is closed.
func (r *recorder) progress(w io.Writer, start time.Time, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := int64(0)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			d := r.done.Load()
			fmt.Fprintf(w, "\r%8d requests  %7d req/s  %s", d, d-last, time.Since(start).Round(time.Second))
			last = d
		}
	}
}

// summary of a run that took el; call it once the workers are done.
func (r *recorder) summary(el time.Duration) *Summary {
	sum := &Summary{Requests: len(r.sent), Seconds: el.Seconds(), StatusCounts: map[string]int{}, BytesSent: r.bytesSent.Load(), Sent: r.sent}
	sum.RequestsPerSecond = float64(len(r.sent)) / el.Seconds()
	for _, s := range r.sent {
		k := strconv.Itoa(s.Status)
		if s.Status == 0 {
			k = "error"
		}
		sum.StatusCounts[k]++
	}
	sum.LatencyMs = percentiles(r.lat)
	return sum
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

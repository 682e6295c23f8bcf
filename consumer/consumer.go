package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

// AuditWriter writes audit records inside the caller's transaction
// (audit.Writer).
type AuditWriter interface {
	Write(ctx context.Context, tx pgx.Tx, recs ...*wire.AuditRecord) error
	// WriteIfAbsent skips records whose audit_id is already written: the
	// receiver's decisions, which travel in the event records and come
	// again with every redelivery.
	WriteIfAbsent(ctx context.Context, tx pgx.Tx, recs ...*wire.AuditRecord) error
}

// RetryPolicy bounds the attempts of a failing event.
type RetryPolicy struct {
	// MaxAttempts, counting the first. Default 8.
	MaxAttempts int
	// InitialBackoff before the second attempt; it doubles each time.
	// Default 1s.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between attempts. Default 5m.
	MaxBackoff time.Duration
	// MaxElapsed bounds the time from the first attempt: a failure whose
	// next attempt would start later goes DEAD. 0 (the default): no bound
	// beyond MaxAttempts.
	MaxElapsed time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 8
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = time.Second
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Minute
	}
	return p
}

// Config configures a Consumer.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Pool is the PostgreSQL pool. With a Handler, each group of customers
	// in flight holds a connection for its transaction (up to Concurrency
	// per busy partition); with a Deliverer, connections are held only to
	// read states and record outcomes. Required.
	Pool *pgxpool.Pool
	// Handler processes events inside the transaction that records their
	// outcome: its writes through the given pgx.Tx happen exactly once.
	// Set at most one of Handler and Deliverer. Default NoopHandler.
	Handler Handler
	// Deliverer processes events outside any transaction (an HTTP
	// destination); the outcome is recorded after the call, at least once.
	Deliverer Deliverer
	// Audit writes audit records in the processing transaction. Required.
	Audit AuditWriter
	// Group is the consumer group. Default "hookstream".
	Group string
	// Topics names the events and dead-letter topics. Default the defaults.
	Topics wire.Topics
	// Retry returns the retry policy of a source. Default: RetryPolicy{}
	// defaults for every source.
	Retry func(source string) RetryPolicy
	// Concurrency bounds the handler (or deliverer) calls this member makes
	// at once, over all its partitions and paths. Default 16.
	Concurrency int
	// CommitInterval bounds the handler time one transaction gathers
	// before it commits (Handler only): what a crash rolls back and runs
	// again is at most about this much work per group. Default 200ms.
	CommitInterval time.Duration
	// BatchWait is how long a batch waits for more partitions' records
	// once it has some, at most: under live traffic it turns a commit per
	// poll into a commit per BatchWait. Default 20ms.
	BatchWait time.Duration
	// BatchEvents is the size at which a batch stops waiting. Default 500.
	BatchEvents int
	// RetakeDelay is how long a member whose partition was fenced waits
	// before it takes the partition again, if the group still assigns it
	// to this member (worker.retake). Default 5s, above the group's
	// heartbeat interval (3s), in which a member that really lost the
	// partition learns so.
	RetakeDelay time.Duration
	// BlockPoll is how often a partition's owner looks for blocked
	// customers whose retry is due, at most; a failure in this member
	// wakes it at once. Default 1s.
	BlockPoll time.Duration
	// Instance names this process in audit records. Default "consumer".
	Instance string
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// KafkaOpts are extra client options (tests: shorter session timeouts).
	KafkaOpts []kgo.Opt
	// TracerProvider makes a span of every attempt at an event (trace.go).
	// Default nil: no spans; the destination gets the event's
	// traceparent and tracestate as they came.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	if c.Handler == nil && c.Deliverer == nil {
		c.Handler = NoopHandler
	}
	if c.Group == "" {
		c.Group = "hookstream"
	}
	c.Topics = c.Topics.WithDefaults()
	if c.Retry == nil {
		c.Retry = func(string) RetryPolicy { return RetryPolicy{} }
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 200 * time.Millisecond
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 20 * time.Millisecond
	}
	if c.BatchEvents <= 0 {
		c.BatchEvents = 500
	}
	if c.RetakeDelay <= 0 {
		c.RetakeDelay = 5 * time.Second
	}
	if c.BlockPoll <= 0 {
		c.BlockPoll = time.Second
	}
	if c.Instance == "" {
		c.Instance = "consumer"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("consumer: Brokers is required")
	case c.Pool == nil:
		return errors.New("consumer: Pool is required")
	case c.Audit == nil:
		return errors.New("consumer: Audit is required")
	case c.Handler != nil && c.Deliverer != nil:
		return errors.New("consumer: set Handler or Deliverer, not both")
	}
	return nil
}

// Consumer is one member of the consumer group.
type Consumer struct {
	cfg       Config
	cl        *kgo.Client
	closeOnce sync.Once
	log       *slog.Logger
	// slots bounds the handler calls in flight (Concurrency), whatever the
	// path: a partition's batch, a retry, a drain.
	slots chan struct{}

	mu      sync.Mutex
	workers map[int32]*worker
	// epochs are the owner epochs this member took for its partitions
	// (fence.go), set when the group assigns them.
	epochs map[int32]int64

	// jobs carries partitions' records to the batch gatherer (gather.go).
	jobs chan *job

	// tracer is nil when tracing is off.
	tracer trace.Tracer

	// handlerAvg is the recent average handler time in nanoseconds. It
	// starts at 1ms: a few hundred events are then spread over as many
	// groups as Concurrency allows, and fast handlers bring it down
	// within a batch or two.
	handlerAvg atomic.Int64
}

// New connects the group member; Run consumes.
func New(cfg Config) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Consumer{cfg: cfg, log: cfg.Logger, workers: map[int32]*worker{}, epochs: map[int32]int64{},
		slots: make(chan struct{}, cfg.Concurrency), jobs: make(chan *job)}
	c.handlerAvg.Store(int64(time.Millisecond))
	if cfg.TracerProvider != nil {
		c.tracer = cfg.TracerProvider.Tracer(tracing.TracerName)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("hookstream-consumer"),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics.Events),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Kafka's committed offsets are for lag tools; the position that
		// counts is the one in PostgreSQL (AdjustFetchOffsetsFn).
		kgo.AutoCommitMarks(),
		kgo.AdjustFetchOffsetsFn(c.takePartitions),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		// Dead letters: idempotent, acks=all, like every other produce.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}
	cl, err := kgo.NewClient(append(opts, cfg.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	c.cl = cl
	return c, nil
}

// Run consumes until ctx ends, then abandons unfinished work safely (its
// transactions roll back; the next owner processes those events), commits
// and leaves the group.
func (c *Consumer) Run(ctx context.Context) error {
	var runners sync.WaitGroup
	runners.Go(func() { c.runBatches(ctx) })
	defer func() {
		c.stopWorkers(c.allPartitions())
		runners.Wait()
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.cl.CommitMarkedOffsets(cctx)
		c.Close()
	}()
	go c.countBlocked(ctx)
	for {
		fs := c.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			c.log.Warn("fetch", "topic", t, "partition", p, "error", err)
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			c.mu.Lock()
			w := c.workers[p.Partition]
			c.mu.Unlock()
			if w == nil {
				return // revoked meanwhile: its next owner fetches again
			}
			w.highWatermark.Store(p.HighWatermark)
			w.enqueue(ctx, p.Records)
		})
	}
}

// countBlocked keeps the blocked-customers gauges current until ctx ends.
func (c *Consumer) countBlocked(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		counts := map[string]float64{stateBlocked: 0, stateParked: 0, stateDraining: 0}
		rows, err := c.cfg.Pool.Query(qctx, `SELECT state, count(*) FROM customer_blocks GROUP BY state`)
		if err == nil {
			var state string
			var n int
			if _, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error { counts[state] = float64(n); return nil }); err == nil {
				for state, n := range counts {
					blockedCustomers.WithLabelValues(state).Set(n)
				}
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close closes the Kafka client. Run does it when it returns; Close is for
// a Consumer whose Run never ran (a later start-up step failed). Calling
// it again is a no-op.
func (c *Consumer) Close() { c.closeOnce.Do(c.cl.Close) }

// call runs the handler or the deliverer for ev, holding one of the
// member's Concurrency slots, and folds its time into the running average.
// tx is the transaction a Handler writes through (nil for a Deliverer).
func (c *Consumer) call(ctx context.Context, tx pgx.Tx, ev *Event) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.slots }()
	start := time.Now()
	ctx = callContext(ctx, ev)
	var err error
	if c.cfg.Deliverer != nil {
		err = c.cfg.Deliverer.Deliver(ctx, ev)
	} else {
		var span trace.Span
		if ev.trace != nil {
			ctx, span = c.tracer.Start(ctx, "handle")
		}
		err = c.cfg.Handler.Handle(ctx, tx, ev)
		if span != nil {
			if err != nil {
				span.SetStatus(codes.Error, redact.Text(err.Error()))
			}
			span.End()
		}
	}
	c.observeHandler(time.Since(start))
	return err
}

// observeHandler folds one handler call into the running average (weight
// 1/16).
func (c *Consumer) observeHandler(d time.Duration) {
	for {
		old := c.handlerAvg.Load()
		if c.handlerAvg.CompareAndSwap(old, old+(int64(d)-old)/16) {
			return
		}
	}
}

func (c *Consumer) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range assigned[c.cfg.Topics.Events] {
		if c.workers[p] != nil {
			continue
		}
		w := newWorker(c, p)
		c.workers[p] = w
		go w.run()
	}
}

// revoked stops the workers of partitions moving to another member; their
// unfinished events are abandoned (rolled back) for the new owner.
func (c *Consumer) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	c.stopWorkers(revoked[c.cfg.Topics.Events])
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.log.Warn("commit on revoke", "error", err)
	}
}

func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.stopWorkers(lost[c.cfg.Topics.Events])
}

func (c *Consumer) allPartitions() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := make([]int32, 0, len(c.workers))
	for p := range c.workers {
		ps = append(ps, p)
	}
	return ps
}

func (c *Consumer) stopWorkers(ps []int32) {
	var stopped []*worker
	c.mu.Lock()
	for _, p := range ps {
		if w := c.workers[p]; w != nil {
			w.cancel()
			stopped = append(stopped, w)
			delete(c.workers, p)
		}
		delete(c.epochs, p)
	}
	c.mu.Unlock()
	for _, w := range stopped {
		<-w.done
		lagRecords.DeleteLabelValues(c.cfg.Topics.Events, strconv.Itoa(int(w.partition)))
	}
}

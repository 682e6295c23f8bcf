package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/retention"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/wire"
)

func runConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	var p processingSettings
	fs := newFlagSet("consume", stderr)
	s.registerKafka(fs)
	s.registerDatabase(fs)
	s.registerLog(fs, "json")
	p.register(fs)
	fs.stringVar(&s.sourcesFile, "sources", "HOOKSTREAM_SOURCES", "", "YAML sources file (destinations and retry policies; without it every event is processed by a no-op)")
	fs.stringVar(&s.instance, "instance", "HOOKSTREAM_INSTANCE", defaultInstance(), "name of this process in audit records")
	fs.stringVar(&s.httpAddr, "http-addr", "HOOKSTREAM_HTTP_ADDR", ":8081", "listen address of /healthz, /readyz and /metrics (empty: no listener); the default is not serve's :8080 so both run on one host")
	log, err := s.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	if s.databaseURL == "" {
		return errors.New("database-url (HOOKSTREAM_DATABASE_URL): required")
	}
	var srcs []sources.Source
	if s.sourcesFile != "" {
		if srcs, err = sources.Load(s.sourcesFile); err != nil {
			return err
		}
	}
	startPprof(log)
	tr, stopTracing, err := startTracing(ctx, s.instance, stdout, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	proc, err := startProcessing(ctx, processingOptions{
		brokers: s.brokers(), kafkaOpts: s.kafkaOpts, databaseURL: s.databaseURL, sources: srcs, instance: s.instance,
		group: p.group, concurrency: p.concurrency, batchWait: p.batchWait, sessionTimeout: p.sessionTimeout, log: log,
		eventsRetention: p.eventsRetention, auditRetention: p.auditRetention, retentionJob: p.retentionJob,
		tracer: tr.Provider(),
	})
	if err != nil {
		return err
	}
	var stopped <-chan struct{} // nil without a listener: never ready
	var srv *httpserver.Server
	if s.httpAddr != "" {
		if srv, err = proc.serve(ctx, s.httpAddr, log); err != nil {
			proc.stop()
			return err
		}
		stopped = srv.Stopped()
		log.Info("consumer running", "group", p.group, "http_addr", srv.Addr())
	} else {
		log.Info("consumer running", "group", p.group)
	}
	select {
	case <-ctx.Done():
	case <-stopped:
	}
	log.Info("shutting down")
	if srv != nil {
		// Health and metrics stay up while processing drains; the
		// listener goes last.
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Stop(sctx); err != nil {
				log.Error("http shutdown", "error", err)
			}
		}()
	}
	proc.stop()
	return nil
}

// serve starts the consumer's HTTP listener: /healthz, /readyz (broker and
// database reachable) and /metrics, no other routes.
func (p *processing) serve(ctx context.Context, addr string, log *slog.Logger) (*httpserver.Server, error) {
	srv := httpserver.New(httpserver.Config{
		Addr: addr,
		Ready: []httpserver.Check{
			{Name: "kafka", Check: func(ctx context.Context) error { return kafka.Ping(ctx, p.producer) }},
			{Name: "postgres", Check: p.pool.Ping},
		},
		Logger: log,
	})
	if err := srv.Start(ctx); err != nil {
		return nil, fmt.Errorf("http-addr (HOOKSTREAM_HTTP_ADDR): %w", err)
	}
	return srv, nil
}

type processingSettings struct {
	group          string
	concurrency    int
	batchWait      time.Duration
	sessionTimeout time.Duration
	// eventsRetention, auditRetention and retentionJob: internal/retention.
	eventsRetention time.Duration
	auditRetention  time.Duration
	retentionJob    bool
}

func (p *processingSettings) register(fs *flagSet) {
	fs.stringVar(&p.group, "group", "HOOKSTREAM_CONSUMER_GROUP", "hookstream", "consumer group of hookstream.events")
	fs.intVar(&p.concurrency, "concurrency", "HOOKSTREAM_CONCURRENCY", 128, "destination calls this member makes at once, over all its partitions (each customer's stay in order)")
	fs.durationVar(&p.batchWait, "batch-wait", "HOOKSTREAM_BATCH_WAIT", 20*time.Millisecond, "how long a batch waits for more partitions' records before its transaction (latency traded for fewer commits under live traffic)")
	fs.durationVar(&p.sessionTimeout, "session-timeout", "HOOKSTREAM_SESSION_TIMEOUT", 45*time.Second, "how long the group waits for a member that stopped heartbeating (a crash) before giving its partitions to others")
	registerEventsRetention(fs, &p.eventsRetention)
	registerAuditRetention(fs, &p.auditRetention)
	fs.boolVar(&p.retentionJob, "retention-job", "HOOKSTREAM_RETENTION_JOB", true, "run the retention of events and audit_log (buckets and partitions made ahead, dropped after events-retention and audit-retention) in this process; false when `hookstream maintain` runs from cron instead (audit_log's partitions are still made ahead here)")
}

// registerEventsRetention is --events-retention, of consume, dev and maintain.
func registerEventsRetention(fs *flagSet, p *time.Duration) {
	fs.ageVar(p, "events-retention", "HOOKSTREAM_EVENTS_RETENTION", retention.DefaultRetention,
		"how long events rows are kept after their bucket closed (a bucket is half of it, in days): the dedupe window (at least 1d; unfinished events are kept until they finish)")
}

// registerAuditRetention is --audit-retention, of consume, dev and maintain.
func registerAuditRetention(fs *flagSet, p *time.Duration) {
	fs.ageVar(p, "audit-retention", "HOOKSTREAM_AUDIT_RETENTION", retention.DefaultAuditRetention,
		"how long audit_log rows are kept: a partition (a week, or half of this in days) is dropped once wholly older, after tombstones on the audit topic for the keys whose last rows it held (at least 1d)")
}

// checkAuditRetention refuses an audit retention shorter than a day.
func checkAuditRetention(d time.Duration) error {
	if d < retention.MinRetention {
		return fmt.Errorf("audit-retention (HOOKSTREAM_AUDIT_RETENTION): must be at least 1d, got %s", d)
	}
	return nil
}

// checkEventsRetention refuses a retention shorter than a bucket.
func checkEventsRetention(d time.Duration) error {
	if d < retention.MinRetention {
		return fmt.Errorf("events-retention (HOOKSTREAM_EVENTS_RETENTION): must be at least 1d, got %s", d)
	}
	return nil
}

type processingOptions struct {
	brokers        []string
	kafkaOpts      []kgo.Opt // TLS, SASL
	databaseURL    string
	sources        []sources.Source
	topics         wire.Topics
	instance       string
	group          string
	concurrency    int
	batchWait      time.Duration
	sessionTimeout time.Duration // 0: franz-go's default (45s)
	// eventsRetention and auditRetention: retention.Config.Retention and
	// AuditRetention; the job runs when retentionJob.
	eventsRetention time.Duration
	auditRetention  time.Duration
	retentionJob    bool
	// idleTransactionTimeout: 0 is idleTransactionTimeout.
	idleTransactionTimeout time.Duration
	log                    *slog.Logger
	// tracer makes the consumer's spans; nil: none.
	tracer trace.TracerProvider
}

// retentionInterval is how often a member runs a retention round: a
// bucket opens at most this late after its day began.
const retentionInterval = 10 * time.Minute

// idleTransactionTimeout is how long PostgreSQL lets a transaction of the
// consumer role sit idle before it ends it. A member paused inside a
// transaction (SIGSTOP, a long GC pause, a frozen VM) holds that
// transaction's locks for as long as it is paused, among them the share
// lock on its partition's owner epoch that the next owner's take waits for
// (docs/design.md, "Fencing"): without a bound, the group gives the
// partition to another member and that member waits for the paused one.
// No transaction of the role waits longer between two statements: the
// longest wait inside one is a dead letter's produce, bounded at 10s.
const idleTransactionTimeout = 15 * time.Second

// newProcessingPool is the consumer role's pool: its transactions end
// when left idle for idle (0: idleTransactionTimeout), unless the URL says
// otherwise.
func newProcessingPool(ctx context.Context, url string, maxConns int32, idle time.Duration) (*pgxpool.Pool, error) {
	if idle <= 0 {
		idle = idleTransactionTimeout
	}
	return newPool(ctx, url, maxConns, "idle_in_transaction_session_timeout", strconv.FormatInt(idle.Milliseconds(), 10))
}

// processing is the consumer role: a group member, the audit relay and the
// audit sink.
type processing struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	close    []func()
	pool     *pgxpool.Pool
	producer *kgo.Client // for readiness
}

func startProcessing(ctx context.Context, o processingOptions) (_ *processing, err error) {
	if o.concurrency < 1 {
		return nil, fmt.Errorf("concurrency (HOOKSTREAM_CONCURRENCY): must be at least 1, got %d", o.concurrency)
	}
	// Zero is unset (options built in code, the job off): the defaults.
	set := o.retentionJob || o.eventsRetention != 0 || o.auditRetention != 0
	if err := errors.Join(checkEventsRetention(o.eventsRetention), checkAuditRetention(o.auditRetention)); set && err != nil {
		return nil, err
	}
	o.topics = o.topics.WithDefaults()
	p := &processing{}
	defer func() {
		if err != nil {
			p.closeAll()
		}
	}()
	// Destinations are called outside transactions: connections serve the
	// batches' reads and records and the steps of blocked customers, each
	// briefly.
	pool, err := newProcessingPool(ctx, o.databaseURL, 32, o.idleTransactionTimeout)
	if err != nil {
		return nil, err
	}
	p.close = append(p.close, pool.Close)
	p.pool = pool
	c, err := newConsumer(o, pool)
	if err != nil {
		return nil, err
	}
	p.close = append(p.close, c.Close) // a no-op once Run has closed it
	// The relay makes its own transactional producer whenever it becomes
	// the active relay; readiness pings the brokers with a plain client.
	_, ready, err := kafka.NewAdmin(kafka.Config{Brokers: o.brokers, ClientID: "hookstream-consume-ready", Opts: o.kafkaOpts})
	if err != nil {
		return nil, err
	}
	p.close = append(p.close, ready.Close)
	p.producer = ready
	relay, err := audit.NewRelay(audit.RelayConfig{Pool: pool, Topic: o.topics.Audit, Logger: o.log, TracerProvider: o.tracer,
		Kafka: kafka.Config{Brokers: o.brokers, ClientID: "hookstream-audit-relay", Opts: o.kafkaOpts, Metrics: true}})
	if err != nil {
		return nil, err
	}
	sink, err := audit.NewSink(audit.SinkConfig{Brokers: o.brokers, KafkaOpts: append([]kgo.Opt{kafka.Metrics()}, o.kafkaOpts...), Pool: pool, Topic: o.topics.Audit, Logger: o.log})
	if err != nil {
		return nil, err
	}
	rounds, err := p.retentionRounds(o, pool)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	runs := []func(context.Context) error{c.Run, relay.Run, sink.Run, rounds}
	for _, run := range runs {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := run(runCtx); err != nil {
				o.log.Error("processing stopped", "error", err)
			}
		}()
	}
	return p, nil
}

// newConsumer is the consumer of o: each source's retry policy, the
// Kafka options of every client (TLS, SASL, metrics: each its own kprom
// hook, since kprom keeps one client's collectors).
func newConsumer(o processingOptions, pool *pgxpool.Pool) (*consumer.Consumer, error) {
	policies := map[string]consumer.RetryPolicy{}
	for _, s := range o.sources {
		policies[s.Name] = consumer.RetryPolicy{MaxAttempts: s.Retry.MaxAttempts, InitialBackoff: s.Retry.InitialBackoff, MaxBackoff: s.Retry.MaxBackoff, MaxElapsed: s.Retry.MaxElapsed}
	}
	kopts := append([]kgo.Opt{kafka.Metrics()}, o.kafkaOpts...)
	if o.sessionTimeout > 0 {
		kopts = append(kopts, kgo.SessionTimeout(o.sessionTimeout))
	}
	return consumer.New(consumer.Config{
		KafkaOpts: kopts,
		Brokers:   o.brokers, Pool: pool, Deliverer: consumer.NewDestinations(o.sources, nil, o.concurrency), Audit: audit.Writer{},
		Group: o.group, Topics: o.topics, Concurrency: o.concurrency, BatchWait: o.batchWait, Instance: o.instance, Logger: o.log,
		Retry:          func(source string) consumer.RetryPolicy { return policies[source] },
		TracerProvider: o.tracer,
	})
}

// retentionRounds runs the retention rounds. Without the job they still
// make audit_log's partitions ahead (and drop nothing): the process's own
// audit writes need them, whether or not a cron job runs `hookstream
// maintain`. With it, a producer writes the audit topic's tombstones
// before a partition of audit_log is dropped (docs/design.md,
// "Tombstones").
func (p *processing) retentionRounds(o processingOptions, pool *pgxpool.Pool) (func(context.Context) error, error) {
	var tombstones *kgo.Client
	if o.retentionJob {
		var err error
		if tombstones, err = kafka.NewProducer(kafka.Config{Brokers: o.brokers, ClientID: "hookstream-retention", Opts: o.kafkaOpts}); err != nil {
			return nil, err
		}
		p.close = append(p.close, tombstones.Close)
	}
	rcfg := retention.Config{Pool: pool, Retention: o.eventsRetention, AuditRetention: o.auditRetention,
		Tombstones: tombstones, AuditTopic: o.topics.Audit, Logger: o.log, AheadOnly: !o.retentionJob}
	return func(ctx context.Context) error { return retention.Loop(ctx, rcfg, retentionInterval) }, nil
}

// stop abandons unfinished work safely (it rolls back and is redone by the
// next owner), commits, leaves the group and closes the pools.
func (p *processing) stop() {
	p.cancel()
	p.wg.Wait()
	p.closeAll()
}

func (p *processing) closeAll() {
	for i := len(p.close) - 1; i >= 0; i-- {
		p.close[i]()
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/console"
	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/wire"
)

// receiverStack is the receiver role wired to its dependencies.
type receiverStack struct {
	log      *slog.Logger
	producer *kgo.Client
	rejects  *kgo.Client // REJECTED records: they may wait minutes for a broker
	pool     *pgxpool.Pool
	dups     *ingest.PostgresDuplicates
	rcv      *ingest.Receiver
	server   *httpserver.Server
	admin    *httpserver.Server // nil without adminAddr
	grace    time.Duration
	// stopRates stops the overview's sampler (nil: none runs).
	stopRates func()
}

// startRates samples the process's counters for the admin overview
// while the stack runs; nil when the admin API is off.
func (s *receiverStack) startRates(on bool) *admin.RateSampler {
	if !on {
		return nil
	}
	rates := admin.NewRateSampler(prometheus.DefaultGatherer, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rates.Run(ctx)
	}()
	s.stopRates = func() {
		cancel()
		<-done
	}
	return rates
}

type receiverOptions struct {
	brokers        []string
	kafkaOpts      []kgo.Opt // TLS, SASL
	databaseURL    string
	addr           string
	sources        []sources.Source
	topics         wire.Topics
	instance       string
	produceTimeout time.Duration
	shutdownGrace  time.Duration
	adminToken     string
	// trustedProxies name the peers whose X-Forwarded-For names the client.
	trustedProxies []netip.Prefix
	// adminAddr, when set, is a listener of its own for the admin API,
	// /metrics and a /readyz with the failing checks' errors; the public
	// listener then serves neither.
	adminAddr string
	log       *slog.Logger
	// tracer makes the receiver's spans; nil: none.
	tracer trace.TracerProvider
}

func startReceiver(ctx context.Context, o receiverOptions) (_ *receiverStack, err error) {
	if o.databaseURL == "" {
		return nil, errors.New("database-url (HOOKSTREAM_DATABASE_URL): required")
	}
	s := &receiverStack{log: o.log, grace: o.shutdownGrace}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.producer, err = kafka.NewProducer(kafka.Config{Brokers: o.brokers, ClientID: "hookstream-ingest", ProduceTimeout: o.produceTimeout, Opts: o.kafkaOpts, Metrics: true})
	if err != nil {
		return nil, fmt.Errorf("kafka-brokers (HOOKSTREAM_KAFKA_BROKERS): %w", err)
	}
	s.rejects, err = kafka.NewProducer(kafka.Config{Brokers: o.brokers, ClientID: "hookstream-ingest-rejections",
		ProduceTimeout: rejectionDeliveryTimeout, Opts: append(slices.Clone(o.kafkaOpts), kgo.MaxBufferedRecords(rejectionBuffer))})
	if err != nil {
		return nil, fmt.Errorf("kafka-brokers (HOOKSTREAM_KAFKA_BROKERS): %w", err)
	}
	s.pool, err = newPool(ctx, o.databaseURL, 0)
	if err != nil {
		return nil, err
	}
	s.dups = ingest.NewPostgresDuplicates(s.pool, ingest.PostgresDuplicatesConfig{})
	s.rcv, err = ingest.New(ingest.Config{
		Sources:  o.sources,
		Producer: s.producer,
		// A rejection is answered at once, but its record may wait out a
		// leader's fail-over, or an outage of minutes, in a buffer of its
		// own, which a flood of bad requests fills without delaying
		// events (a full buffer fails the record, counted).
		RejectionProducer: s.rejects,
		Duplicates:        s.dups,
		Topics:            o.topics,
		Instance:          o.instance,
		ProduceTimeout:    o.produceTimeout,
		Logger:            o.log,
		TracerProvider:    o.tracer,
		PreAuth:           ingest.PreAuthConfig{TrustedProxies: o.trustedProxies},
	})
	if err != nil {
		return nil, err
	}
	adminRoutes := admin.Register(admin.Config{Token: o.adminToken, Pool: s.pool, Instance: o.instance, Logger: o.log,
		Brokers: o.brokers, KafkaOpts: o.kafkaOpts, AuditTopic: o.topics.WithDefaults().Audit, EventsTopic: o.topics.WithDefaults().Events,
		Rates: s.startRates(o.adminToken != "")})
	// The console calls the admin API in-process through the router that
	// serves it (one authenticator, one throttle), known once it is built.
	adminRouter := &lateHandler{}
	consoleRoutes := console.Register(console.Config{Token: o.adminToken, API: adminRouter, Logger: o.log})
	ready := []httpserver.Check{
		{Name: "kafka", Check: func(ctx context.Context) error { return kafka.Ping(ctx, s.producer) }},
		{Name: "postgres", Check: s.pool.Ping},
	}
	public := httpserver.Config{Addr: o.addr, Routes: []func(r gin.IRouter){s.rcv.Register}, Ready: ready, Logger: o.log}
	if o.adminAddr == "" {
		public.Routes = append(public.Routes, adminRoutes, consoleRoutes)
	} else {
		public.NoMetrics = true
		s.admin = httpserver.New(httpserver.Config{Addr: o.adminAddr, Routes: []func(r gin.IRouter){adminRoutes, consoleRoutes},
			Ready: ready, ReadyDetail: true, Logger: o.log})
		adminRouter.h = s.admin.Handler()
		if err := s.admin.Start(ctx); err != nil {
			s.admin = nil
			return nil, fmt.Errorf("admin-addr (HOOKSTREAM_ADMIN_ADDR): %w", err)
		}
	}
	s.server = httpserver.New(public)
	if s.admin == nil {
		adminRouter.h = s.server.Handler()
	}
	if err := s.server.Start(ctx); err != nil {
		s.server = nil
		if s.admin != nil { // already serving: stop it, within ctx
			_ = s.admin.Stop(ctx)
		}
		return nil, err
	}
	return s, nil
}

// lateHandler serves with a handler set after it was handed out, before
// the server that holds it starts: the console needs the router it is
// itself mounted on.
type lateHandler struct{ h http.Handler }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.h.ServeHTTP(w, r) }

const (
	rejectionDeliveryTimeout = 2 * time.Minute
	rejectionBuffer          = 10000 // records; each a few hundred bytes
)

// newPool connects to url; maxConns 0 keeps pgxpool's default (or the
// URL's pool_max_conns). params are session settings, as name, value
// pairs, applied unless the URL sets them.
func newPool(ctx context.Context, url string, maxConns int32, params ...string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database-url (HOOKSTREAM_DATABASE_URL): %w", err)
	}
	if maxConns > 0 && cfg.MaxConns < maxConns {
		cfg.MaxConns = maxConns
	}
	for i := 0; i+1 < len(params); i += 2 {
		if _, set := cfg.ConnConfig.RuntimeParams[params[i]]; !set {
			cfg.ConnConfig.RuntimeParams[params[i]] = params[i+1]
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}

// stop drains: the listener closes, in-flight requests finish (each waits
// for its produce), then the producer flushes and the pools close.
func (s *receiverStack) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	if s.server != nil {
		if err := s.server.Stop(ctx); err != nil {
			s.log.Error("http shutdown", "error", err)
		}
	}
	if s.admin != nil {
		if err := s.admin.Stop(ctx); err != nil {
			s.log.Error("admin http shutdown", "error", err)
		}
	}
	if s.rcv != nil {
		s.rcv.Close() // writes the rejection summaries still pending
	}
	for _, p := range []*kgo.Client{s.producer, s.rejects} {
		if p == nil {
			continue
		}
		if err := p.Flush(ctx); err != nil {
			s.log.Error("producer flush", "error", err)
		}
	}
	s.close()
}

func (s *receiverStack) close() {
	if s.stopRates != nil {
		s.stopRates()
		s.stopRates = nil
	}
	if s.dups != nil {
		s.dups.Close()
	}
	if s.producer != nil {
		s.producer.Close()
	}
	if s.rejects != nil {
		s.rejects.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

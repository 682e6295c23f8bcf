// Package tracing sets up OpenTelemetry tracing for the binary from the
// standard OTEL_* variables, and holds what the receiver and the consumer
// share about traces: the propagator (W3C trace context), the tracer's
// name and hookstream's own attribute keys. The contract (which spans,
// which headers, what links) is docs/design.md, "Tracing".
//
// Tracing is off unless OTEL_TRACES_EXPORTER names an exporter: a
// receiver or consumer without a TracerProvider makes no span and
// allocates nothing for tracing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names hookstream's tracer (the instrumentation scope).
const TracerName = "github.com/hookstream/hookstream"

// Propagator reads and writes the W3C headers traceparent and tracestate,
// on HTTP requests and on Kafka records alike. Only W3C: the record
// headers are part of the contract, whatever OTEL_PROPAGATORS says.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// hookstream's attributes. Their values are bounded by configuration
// (sources, reasons, outcomes) except the event id, which is an
// attribute to search by and never part of a span's name.
const (
	AttrSource  = attribute.Key("hookstream.source")
	AttrEventID = attribute.Key("hookstream.event_id")
	AttrAttempt = attribute.Key("hookstream.attempt")
	// AttrOutcome is what became of an event's attempt: processed,
	// failed, dead, parked, duplicate, requeued; or abandoned when the
	// batch stopped before recording it (it runs again).
	AttrOutcome = attribute.Key("hookstream.outcome")
	// AttrEventStatus is what the receiver's duplicate check found of a
	// known event (PROCESSED, FAILED, ...).
	AttrEventStatus = attribute.Key("hookstream.event.status")
	// AttrReason is the receiver's error code of a rejection.
	AttrReason = attribute.Key("hookstream.reason")
	// AttrTrigger says why the consumer ran an attempt: record (read
	// from the topic) or step (a blocked customer's retry or drain,
	// which a replay or a re-sent event also starts).
	AttrTrigger = attribute.Key("hookstream.trigger")
	// AttrBatchEvents is how many events shared a batch's read or
	// transaction (the consumer's lookup and record spans).
	AttrBatchEvents = attribute.Key("hookstream.batch.events")
	// AttrBatchLinksDropped is how many of an audit relay round's
	// decisions its span does not link to, past the bound on links.
	AttrBatchLinksDropped = attribute.Key("hookstream.batch.links_dropped")
)

// Config configures Setup; every field is optional.
type Config struct {
	// Version is service.version. Default: none.
	Version string
	// Instance is service.instance.id (the --instance name). Default: none.
	Instance string
	// Console is where the console exporter writes. Default os.Stdout.
	Console io.Writer
	// Logger receives the SDK's errors after start (an export the
	// collector refused). Default slog.Default().
	Logger *slog.Logger
}

// Tracing is the process's tracer provider, or nothing when tracing is off.
type Tracing struct {
	provider *sdktrace.TracerProvider
}

// Setup reads the standard variables:
//
//   - OTEL_TRACES_EXPORTER: unset, empty or none: off. otlp, console, or
//     both separated by a comma.
//   - OTEL_SDK_DISABLED=true: off, whatever the exporter.
//   - OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL: http/protobuf (default) or
//     grpc; the endpoint, headers, timeout and TLS variables are read by
//     the OTLP exporter itself.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, read by the SDK
//     (default parentbased_always_on).
//   - OTEL_SERVICE_NAME (default hookstream) and OTEL_RESOURCE_ATTRIBUTES.
//   - OTEL_BSP_*, the batch span processor's, read by the SDK.
//
// A value it cannot use is an error naming the variable: the SDK itself
// would only log a bad sampler argument and sample everything.
func Setup(ctx context.Context, cfg Config) (*Tracing, error) {
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return &Tracing{}, nil
	}
	names := exporterNames(os.Getenv("OTEL_TRACES_EXPORTER"))
	if len(names) == 0 {
		return &Tracing{}, nil
	}
	var exporters []sdktrace.SpanExporter
	stopExporters := func() {
		for _, e := range exporters {
			_ = e.Shutdown(ctx)
		}
	}
	for _, name := range names {
		exp, err := newExporter(ctx, name, cfg.Console)
		if err != nil {
			stopExporters()
			return nil, err
		}
		exporters = append(exporters, exp)
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		stopExporters()
		return nil, err
	}
	// Last: a batch processor starts its goroutine when it is made.
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, exp := range exporters {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	var tp *sdktrace.TracerProvider
	if err := capturingErrors(cfg.Logger, func() { tp = sdktrace.NewTracerProvider(opts...) }); err != nil {
		_ = tp.Shutdown(ctx)
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG: %w", err)
	}
	// A Handler's own spans (a library user's) join hookstream's traces
	// through the global provider.
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	return &Tracing{provider: tp}, nil
}

// exporterNames splits OTEL_TRACES_EXPORTER; none alone means off.
func exporterNames(v string) []string {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n != "" && n != "none" {
			names = append(names, n)
		}
	}
	return names
}

func newExporter(ctx context.Context, name string, console io.Writer) (sdktrace.SpanExporter, error) {
	switch name {
	case "console":
		return stdouttrace.New(stdouttrace.WithWriter(console))
	case "otlp":
		proto := strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
		variable := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
		if proto == "" {
			proto, variable = strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")), "OTEL_EXPORTER_OTLP_PROTOCOL"
		}
		var exp sdktrace.SpanExporter
		var err error
		switch proto {
		case "", "http/protobuf":
			exp, err = otlptracehttp.New(ctx)
		case "grpc":
			exp, err = otlptracegrpc.New(ctx)
		default:
			return nil, fmt.Errorf("%s: %q is not http/protobuf or grpc", variable, proto)
		}
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_*: %w", err)
		}
		return exp, nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not otlp, console or none", name)
}

// newResource describes the process: service.name hookstream unless the
// variables say otherwise. Not the process detector: its command line
// may hold a secret given as a flag.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName("hookstream")}
	if cfg.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.Version))
	}
	if cfg.Instance != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(cfg.Instance))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(), // last: the variables win
	)
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME: %w", err)
	}
	return res, nil
}

// Provider is the tracer provider, or nil when tracing is off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider
}

// Shutdown exports the spans still buffered and stops the exporters;
// call it after the components have stopped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// The SDK reports errors (a sampler it could not read, an export that
// failed) to one global handler. hookstream installs it once: it logs
// through the process's logger, except while capturingErrors collects
// them.
var (
	handlerOnce sync.Once
	errorSink   atomic.Pointer[func(error)]
)

func capturingErrors(log *slog.Logger, f func()) error {
	handlerOnce.Do(func() {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			if sink := errorSink.Load(); sink != nil {
				(*sink)(err)
			}
		}))
	})
	var mu sync.Mutex
	var errs []error
	collect := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	errorSink.Store(&collect)
	f()
	logged := func(err error) { log.Warn("tracing", "error", err) }
	errorSink.Store(&logged)
	mu.Lock()
	defer mu.Unlock()
	return errors.Join(errs...)
}

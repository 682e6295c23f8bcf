package consumer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

// Destinations is the binary's Deliverer: it delivers each event to its
// source's destination, and processes events of sources without one by
// doing nothing.
//
// Delivery is an HTTP POST of the raw body with Idempotency-Key: <event_id>
// and the metadata as X-Hookstream-* headers. 2xx is success; 4xx other
// than 408 and 429 is a permanent failure; anything else, including a
// timeout, is transient, and a Retry-After is honoured.
type Destinations struct {
	bySource map[string]destination
	client   *http.Client
}

// destination is a source's destination with the URL as errors show it:
// without the credentials it may carry (internal/redact), since a
// delivery's error ends up in logs, last_error, audit records and the
// dead-letter record.
type destination struct {
	sources.Destination
	shown string
	// host and port name the server in the call's span.
	host string
	port int
}

// NewDestinations builds the deliverer from the sources' destinations.
// With a nil client it makes one that keeps up to maxConns connections per
// destination host open for reuse (net/http's default keeps 2, so calls
// beyond those would each dial and close a connection).
func NewDestinations(srcs []sources.Source, client *http.Client, maxConns int) *Destinations {
	if client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = max(maxConns, 100)
		t.MaxIdleConnsPerHost = max(maxConns, 2)
		client = &http.Client{Transport: t}
	}
	d := &Destinations{bySource: map[string]destination{}, client: client}
	for _, s := range srcs {
		if s.Destination != nil {
			d.bySource[s.Name] = newDestination(*s.Destination)
		}
	}
	return d
}

func newDestination(s sources.Destination) destination {
	d := destination{Destination: s, shown: redact.URL(s.URL)}
	if u, err := url.Parse(s.URL); err == nil {
		d.host = u.Hostname()
		d.port, _ = strconv.Atoi(u.Port())
		if d.port == 0 && u.Scheme == "https" {
			d.port = 443
		} else if d.port == 0 {
			d.port = 80
		}
	}
	return d
}

// Deliver implements Deliverer. When ctx holds a span (the consumer's
// attempt at ev), the call is a client span of its own, whose context the
// destination receives in traceparent and tracestate; otherwise the
// destination receives the event's as they came.
func (d *Destinations) Deliver(ctx context.Context, ev *Event) error {
	dest, ok := d.bySource[ev.Source]
	if !ok {
		return nil
	}
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		_, err := d.deliver(ctx, dest, ev, false)
		return err
	}
	ctx, span := parent.TracerProvider().Tracer(tracing.TracerName).Start(ctx, http.MethodPost,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.HTTPRequestMethodPost, semconv.URLFull(dest.shown),
			semconv.ServerAddress(dest.host), semconv.ServerPort(dest.port)))
	status, err := d.deliver(ctx, dest, ev, true)
	endCallSpan(ctx, span, status, err)
	return err
}

// deliver makes the call and returns the destination's status (0 when
// it did not answer); traced: the destination receives the context of the
// span in ctx instead of the event's.
func (d *Destinations) deliver(ctx context.Context, dest destination, ev *Event, traced bool) (int, error) {
	timeout := dest.Timeout
	if timeout <= 0 {
		timeout = sources.DefaultDestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return 0, Permanent(fmt.Errorf("deliver to %s: %w", dest.shown, unwrapURL(err)))
	}
	ct := ev.Headers[wire.HeaderContentType]
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Idempotency-Key", ev.EventID)
	req.Header.Set("User-Agent", "hookstream")
	for k, v := range ev.Headers {
		switch k {
		case wire.HeaderAudit:
			// hookstream's own record, not the destination's business
		case wire.HeaderTraceparent, wire.HeaderTracestate:
			if !traced {
				req.Header.Set(k, v) // the W3C names, as they came
			}
		default:
			req.Header.Set("X-Hookstream-"+k, v)
		}
	}
	req.Header.Set("X-Hookstream-Attempt", strconv.Itoa(ev.Attempt))
	if traced {
		tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("deliver to %s: %w", dest.shown, unwrapURL(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return resp.StatusCode, Permanent(fmt.Errorf("deliver to %s: %s: %s", dest.shown, resp.Status, strings.TrimSpace(string(snippet))))
	}
	err = fmt.Errorf("deliver to %s: %s: %s", dest.shown, resp.Status, strings.TrimSpace(string(snippet)))
	if after := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); after > 0 {
		return resp.StatusCode, RetryAfter(err, after)
	}
	return resp.StatusCode, err
}

// endCallSpan ends a destination call's span by the HTTP client
// conventions: a status of 400 or more, or no answer, is an error; the
// error text is redacted as everywhere it is shown.
func endCallSpan(ctx context.Context, span trace.Span, status int, err error) {
	if status > 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
	switch {
	case status >= 400:
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, "")
	case err != nil:
		kind := semconv.ErrorTypeOther
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			kind = semconv.ErrorTypeKey.String("timeout")
		}
		span.SetAttributes(kind)
		span.SetStatus(codes.Error, redact.Text(err.Error()))
	}
	span.End()
}

// unwrapURL drops net/http's *url.Error around err: it names the URL with
// its query (tokens included), which the caller names itself, redacted.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

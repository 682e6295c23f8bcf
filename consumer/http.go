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

	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/internal/sources"
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
			d.bySource[s.Name] = destination{Destination: *s.Destination, shown: redact.URL(s.Destination.URL)}
		}
	}
	return d
}

// Deliver implements Deliverer.
func (d *Destinations) Deliver(ctx context.Context, ev *Event) error {
	dest, ok := d.bySource[ev.Source]
	if !ok {
		return nil
	}
	timeout := dest.Timeout
	if timeout <= 0 {
		timeout = sources.DefaultDestTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.URL, bytes.NewReader(ev.Body))
	if err != nil {
		return Permanent(fmt.Errorf("deliver to %s: %w", dest.shown, unwrapURL(err)))
	}
	ct := ev.Headers[wire.HeaderContentType]
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Idempotency-Key", ev.EventID)
	req.Header.Set("User-Agent", "hookstream")
	for k, v := range ev.Headers {
		if k == wire.HeaderAudit {
			continue // hookstream's own record, not the destination's business
		}
		if k == wire.HeaderTraceparent {
			req.Header.Set("Traceparent", v)
			continue
		}
		req.Header.Set("X-Hookstream-"+k, v)
	}
	req.Header.Set("X-Hookstream-Attempt", strconv.Itoa(ev.Attempt))
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("deliver to %s: %w", dest.shown, unwrapURL(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return Permanent(fmt.Errorf("deliver to %s: %s: %s", dest.shown, resp.Status, strings.TrimSpace(string(snippet))))
	}
	err = fmt.Errorf("deliver to %s: %s: %s", dest.shown, resp.Status, strings.TrimSpace(string(snippet)))
	if after := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); after > 0 {
		return RetryAfter(err, after)
	}
	return err
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

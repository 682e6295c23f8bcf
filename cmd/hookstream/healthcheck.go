package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealthcheck probes a hookstream HTTP endpoint: the container image is
// distroless (no shell, no curl), so its health checks run the binary.
func runHealthcheck(ctx context.Context, args []string, _, stderr io.Writer) error {
	var url string
	var timeout time.Duration
	fs := newFlagSet("healthcheck", stderr)
	fs.StringVar(&url, "url", "http://127.0.0.1:8080/readyz", "URL to GET; a 2xx answer is healthy")
	fs.DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	if err := fs.parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}

package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/hookstream/hookstream/internal/tracing"
)

// startTracing sets tracing up from the OTEL_* variables (internal/tracing:
// off unless OTEL_TRACES_EXPORTER names an exporter); the console exporter
// writes to stdout. The returned stop exports what is still buffered: call
// it after the roles have stopped, so that their last spans go out too.
func startTracing(ctx context.Context, instance string, stdout io.Writer, log *slog.Logger) (*tracing.Tracing, func(), error) {
	t, err := tracing.Setup(ctx, tracing.Config{Version: version, Instance: instance, Console: stdout, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if t.Provider() != nil {
		log.Info("tracing on (OTEL_TRACES_EXPORTER)")
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.Shutdown(sctx); err != nil {
			log.Error("tracing shutdown", "error", err)
		}
	}
	return t, stop, nil
}

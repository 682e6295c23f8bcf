// Command slowdest is an HTTP destination that answers 200 after a fixed
// delay, for the consumer's slow-destination benchmark
// (scripts/bench-destination.sh). On SIGTERM it prints how many calls it
// took and the most it had in flight at once.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8095", "listen address")
	delay := flag.Duration("delay", 20*time.Millisecond, "time to answer each call")
	flag.Parse()
	var calls, inFlight, peak atomic.Int64
	srv := &http.Server{Addr: *addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(*delay) // the destination's own processing time
		calls.Add(1)
		w.WriteHeader(http.StatusOK)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	fmt.Printf("calls=%d peak_in_flight=%d\n", calls.Load(), peak.Load())
}

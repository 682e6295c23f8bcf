// Command slowdest is an HTTP destination that answers 200 after a fixed
// delay, for the consumer's slow-destination benchmark
// (scripts/bench-destination.sh). With --fail-for it answers 503 for that
// long after its first call to customers whose id ends in 0 (a tenth of
// loadevents' cus_N customers: scripts/bench-failing.sh). On SIGTERM it
// prints how many calls it took, how many it failed, and the most it had
// in flight at once.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8095", "listen address")
	delay := flag.Duration("delay", 20*time.Millisecond, "time to answer each call")
	failFor := flag.Duration("fail-for", 0, "answer 503 to customers whose id ends in 0 for this long after the first call")
	flag.Parse()
	var calls, failed, inFlight, peak atomic.Int64
	var first atomic.Int64 // unix nanoseconds of the first call
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
		first.CompareAndSwap(0, time.Now().UnixNano())
		if strings.HasSuffix(r.Header.Get("X-Hookstream-customer-id"), "0") && time.Since(time.Unix(0, first.Load())) < *failFor {
			failed.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
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
	fmt.Printf("calls=%d failed=%d peak_in_flight=%d\n", calls.Load(), failed.Load(), peak.Load())
}

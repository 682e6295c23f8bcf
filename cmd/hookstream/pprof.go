package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
)

// startPprof serves net/http/pprof on HOOKSTREAM_PPROF_ADDR when it is set
// (for profiling under load; keep it on a loopback address).
func startPprof(log *slog.Logger) {
	addr := os.Getenv("HOOKSTREAM_PPROF_ADDR")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	go func() {
		if err := http.ListenAndServe(addr, mux); err != nil {
			log.Error("pprof server", "error", err)
		}
	}()
	log.Info("pprof listening", "addr", addr)
}

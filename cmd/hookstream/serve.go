package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hookstream/hookstream/internal/sources"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	fs := newFlagSet("serve", stderr)
	s.registerKafka(fs)
	s.registerDatabase(fs)
	s.registerServer(fs, ":8080")
	s.registerLog(fs, "json")
	log, err := s.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	if s.sourcesFile == "" {
		return errors.New("sources (HOOKSTREAM_SOURCES): required: serve has no built-in sources")
	}
	srcs, err := sources.Load(s.sourcesFile)
	if err != nil {
		return err
	}
	startPprof(log)
	tr, stopTracing, err := startTracing(ctx, s.instance, stdout, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	st, err := startReceiver(ctx, receiverOptions{
		brokers: s.brokers(), kafkaOpts: s.kafkaOpts, databaseURL: s.databaseURL, addr: s.httpAddr, sources: srcs,
		instance: s.instance, produceTimeout: s.produceTimeout, shutdownGrace: s.shutdownGrace, adminToken: s.adminToken, adminAddr: s.adminAddr, trustedProxies: s.proxies, log: log,
		tracer: tr.Provider(),
	})
	if err != nil {
		return err
	}
	if st.admin != nil {
		log.Info("receiver listening", "addr", st.server.Addr(), "admin_addr", st.admin.Addr(), "sources", len(srcs))
	} else {
		log.Info("receiver listening", "addr", st.server.Addr(), "sources", len(srcs))
	}
	select {
	case <-ctx.Done():
	case <-st.server.Stopped():
	}
	log.Info("shutting down")
	st.stop()
	fmt.Fprintln(stdout, "stopped")
	return nil
}

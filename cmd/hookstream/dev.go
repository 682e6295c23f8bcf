package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hookstream/hookstream/ingest/signature"
	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/migrate"
	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/schemas"
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, log, err := parseDev(args, stderr)
	if err != nil {
		return err
	}
	// Everything started here is stopped in reverse order on the way out.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	s, p := &o.settings, &o.processing
	brokers, stopKafka, err := o.startKafka(ctx, log)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopKafka)
	dbURL, dbShown, stopPostgres, err := o.startPostgres(ctx, log)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopPostgres)
	if _, err := migrate.Up(ctx, dbURL); err != nil {
		return err
	}
	if err := ensureTopics(ctx, kafka.Config{Brokers: brokers, ClientID: "hookstream-topics", Opts: s.kafkaOpts}, s.topicsConfig(), io.Discard, func(msg string) { log.Warn(msg) }); err != nil {
		return err
	}

	srcs, genericSecret, err := devSources(s.sourcesFile, o.dataDir)
	if err != nil {
		return err
	}
	startPprof(log)
	tr, stopTracing, err := startTracing(ctx, s.instance, stdout, log)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, stopTracing) // after the roles below have stopped
	st, err := startReceiver(ctx, receiverOptions{
		brokers: brokers, kafkaOpts: s.kafkaOpts, databaseURL: dbURL, addr: s.httpAddr, sources: srcs,
		instance: s.instance, produceTimeout: s.produceTimeout, shutdownGrace: s.shutdownGrace, adminToken: s.adminToken, adminAddr: s.adminAddr, trustedProxies: s.proxies, log: log,
		tracer: tr.Provider(),
	})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, st.stop)
	if o.consume {
		proc, err := startProcessing(ctx, processingOptions{
			brokers: brokers, kafkaOpts: s.kafkaOpts, databaseURL: dbURL, sources: srcs, instance: s.instance,
			group: p.group, concurrency: p.concurrency, batchWait: p.batchWait, sessionTimeout: p.sessionTimeout, log: log,
			eventsRetention: p.eventsRetention, auditRetention: p.auditRetention, retentionJob: p.retentionJob,
			tracer: tr.Provider(),
		})
		if err != nil {
			return err
		}
		cleanups = append(cleanups, proc.stop)
	}
	if err := printDevBanner(stdout, st, brokers, dbShown, genericSecret, s.adminToken != ""); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-st.server.Stopped():
	}
	log.Info("shutting down")
	return nil
}

// devOptions are dev's flags.
type devOptions struct {
	settings
	processing           processingSettings
	dataDir, kafkaListen string
	consume              bool
}

// parseDev reads dev's flags and makes the data directory private to
// this user.
func parseDev(args []string, stderr io.Writer) (*devOptions, *slog.Logger, error) {
	o := &devOptions{}
	s := &o.settings
	fs := newFlagSet("dev", stderr)
	s.registerKafka(fs)
	s.registerDatabase(fs)
	s.registerServer(fs, "127.0.0.1:8080")
	s.registerPartitions(fs)
	s.registerDurability(fs)
	s.registerLog(fs, "text")
	fs.stringVar(&o.dataDir, "data-dir", "HOOKSTREAM_DATA_DIR", ".hookstream", "where the embedded broker and PostgreSQL keep their data")
	o.processing.register(fs)
	fs.BoolVar(&o.consume, "consume", true, "also run the consumer, audit relay and audit sink (false: the receiver alone, for benchmarks)")
	fs.stringVar(&o.kafkaListen, "kafka-listen", "HOOKSTREAM_KAFKA_LISTEN", "127.0.0.1:9092", "address of the embedded broker (when HOOKSTREAM_KAFKA_BROKERS is unset)")
	log, err := s.parse(fs, args, stderr)
	if err != nil {
		return nil, nil, err
	}
	if o.dataDir, err = filepath.Abs(o.dataDir); err != nil {
		return nil, nil, fmt.Errorf("data-dir: %w", err)
	}
	// The data dir holds events, the generic secret and the private
	// PostgreSQL's password: on a shared machine it is this user's alone
	// (0700; 0710 for the postgres group when PostgreSQL runs as that
	// user), and so is every file dev and the embedded broker write in it
	// (umask 077: kfake creates its files 0644).
	if err := devstack.PrivateDir(o.dataDir, s.databaseURL == ""); err != nil {
		return nil, nil, fmt.Errorf("data-dir: %w", err)
	}
	syscall.Umask(0o077)
	return o, log, nil
}

// startKafka starts the embedded broker unless brokers were given, and
// returns the brokers and what stops it.
func (o *devOptions) startKafka(ctx context.Context, log *slog.Logger) ([]string, func(), error) {
	if brokers := o.brokers(); len(brokers) > 0 {
		return brokers, func() {}, nil
	}
	if len(o.kafkaOpts) > 0 {
		return nil, nil, errors.New("kafka-tls, kafka-sasl-* (HOOKSTREAM_KAFKA_TLS…, HOOKSTREAM_KAFKA_SASL_…): apply to the brokers of HOOKSTREAM_KAFKA_BROKERS; the embedded broker speaks plaintext")
	}
	dir := filepath.Join(o.dataDir, "kafka")
	k, err := devstack.StartKafka(ctx, devstack.KafkaConfig{DataDir: dir, ListenAddr: o.kafkaListen})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded broker: %w", err)
	}
	log.Info("embedded Kafka-protocol broker (kfake) started", "addr", strings.Join(k.Addrs(), ","), "data", dir)
	return k.Addrs(), k.Close, nil
}

// startPostgres starts the private PostgreSQL unless a database was
// given, and returns its URL, the URL as shown (no password), and what
// stops it.
func (o *devOptions) startPostgres(ctx context.Context, log *slog.Logger) (url, shown string, stop func(), err error) {
	if o.databaseURL != "" {
		return o.databaseURL, redact.URL(o.databaseURL), func() {}, nil
	}
	dir := filepath.Join(o.dataDir, "postgres")
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{
		DataDir: dir,
		Logf:    func(f string, a ...any) { log.Info(fmt.Sprintf(f, a...)) },
	})
	if err != nil {
		return "", "", nil, fmt.Errorf("private PostgreSQL: %w", err)
	}
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pg.Stop(sctx); err != nil {
			log.Error("stopping PostgreSQL", "error", err)
		}
	}
	url = pg.URL()
	log.Info("private PostgreSQL started", "url", redact.URL(url), "password_file", pg.PasswordFile(), "data", dir)
	return url, redact.URL(url) + " (password in " + pg.PasswordFile() + ")", stop, nil
}

// printDevBanner tells the user where everything is and how to send a
// first event.
func printDevBanner(stdout io.Writer, st *receiverStack, brokers []string, dbShown, genericSecret string, withAdmin bool) error {
	url := "http://" + displayAddr(st.server.Addr())
	fmt.Fprintf(stdout, "\nhookstream dev is running at %s\n", url)
	fmt.Fprintf(stdout, "  Kafka:      %s (topics hookstream.events, hookstream.dlq, hookstream.audit)\n", strings.Join(brokers, ","))
	fmt.Fprintf(stdout, "  PostgreSQL: %s\n", dbShown)
	if genericSecret != "" {
		c, err := exampleCurl(url, genericSecret)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  Source generic, secret %s\n\nSend a signed event:\n\n%s\n\n", genericSecret, c)
	}
	adminURL := url
	if st.admin != nil {
		adminURL = "http://" + displayAddr(st.admin.Addr())
		fmt.Fprintf(stdout, "  Metrics:    %s/metrics\n", adminURL)
	}
	if withAdmin {
		fmt.Fprintf(stdout, "  Admin API:  %s/admin/ (Authorization: Bearer $HOOKSTREAM_ADMIN_TOKEN)\n", adminURL)
		fmt.Fprintf(stdout, "  Console:    %s/console/ (log in with $HOOKSTREAM_ADMIN_TOKEN)\n", adminURL)
	}
	fmt.Fprintln(stdout, "Send it twice: once it is processed the second answer is 409 (duplicate).")
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	return nil
}

// devSources loads the sources file, if any, and adds the built-in generic
// source unless the file defines it. The generic secret is
// HOOKSTREAM_GENERIC_SECRET or one generated once and kept in the data dir,
// so that a restart does not invalidate what a user has already signed.
func devSources(file, dataDir string) ([]sources.Source, string, error) {
	var srcs []sources.Source
	if file != "" {
		var err error
		if srcs, err = sources.Load(file); err != nil {
			return nil, "", err
		}
	}
	for _, src := range srcs {
		if src.Name == sources.GenericName {
			return srcs, "", nil
		}
	}
	secret, err := genericSecret(dataDir)
	if err != nil {
		return nil, "", err
	}
	schema, err := fs.ReadFile(schemas.JSON(), "generic.schema.json")
	if err != nil {
		return nil, "", err
	}
	g := sources.Generic([]string{secret}, schema)
	return append(srcs, g), secret, nil
}

func genericSecret(dataDir string) (string, error) {
	if v := os.Getenv("HOOKSTREAM_GENERIC_SECRET"); v != "" {
		return v, nil
	}
	path := filepath.Join(dataDir, "generic.secret")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("generic secret: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := "dev_" + hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("generic secret: %w", err)
	}
	return secret, nil
}

// exampleCurl is a ready-to-paste request to the generic source.
func exampleCurl(baseURL, secret string) (string, error) {
	signer, err := signature.NewSigner(signature.Config{Scheme: "hmac-sha256", Secrets: []string{secret}, Header: "X-Signature", Encoding: "hex"})
	if err != nil {
		return "", err
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	body := fmt.Sprintf(`{"event_id":"evt_%s","customer_id":"cus_42","event_type":"invoice.paid","payload":{"amount":1200,"currency":"eur"}}`, hex.EncodeToString(id))
	h := signer.Sign("", []byte(body), time.Now())
	return fmt.Sprintf("curl -i -X POST %s/webhooks/generic \\\n  -H 'Content-Type: application/json' \\\n  -H 'X-Signature: %s' \\\n  -d '%s'", baseURL, h.Get("X-Signature"), body), nil
}

// displayAddr turns a wildcard listen address into one a user can paste.
func displayAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/topics"
)

// settings are the options shared by the roles. Each has a flag and a
// HOOKSTREAM_* variable; the flag wins.
type settings struct {
	kafkaBrokers   string
	databaseURL    string
	httpAddr       string
	adminAddr      string
	adminToken     string
	trustedProxies string
	sourcesFile    string
	partitions     int
	replication    int
	minInsync      int
	produceTimeout time.Duration
	logLevel       string
	logFormat      string
	instance       string
	shutdownGrace  time.Duration
	kafkaSecurity  kafka.Security
	topicRetention topicRetention

	hasPartitions bool // registerPartitions was called
	hasDurability bool // registerDurability was called
	hasKafka      bool // registerKafka was called
	// kafkaOpts apply kafkaSecurity to a client; set by validate.
	kafkaOpts []kgo.Opt
	// proxies are trustedProxies parsed; set by validate.
	proxies []netip.Prefix
}

type flagSet struct {
	*flag.FlagSet
	errs []error
}

func newFlagSet(name string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("hookstream "+name, flag.ContinueOnError)}
	fs.SetOutput(stderr)
	return fs
}

func (fs *flagSet) envDefault(env, def string) string {
	if v, ok := os.LookupEnv(env); ok {
		return v
	}
	return def
}

func (fs *flagSet) stringVar(p *string, name, env, def, usage string) {
	fs.StringVar(p, name, fs.envDefault(env, def), usage+" ("+env+")")
}

func (fs *flagSet) intVar(p *int, name, env string, def int, usage string) {
	v := def
	if s, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s: %q is not an integer", env, s))
		}
		v = n
	}
	fs.IntVar(p, name, v, usage+" ("+env+")")
}

func (fs *flagSet) boolVar(p *bool, name, env string, def bool, usage string) {
	v := def
	if s, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s: %q is not a boolean (true or false)", env, s))
		}
		v = b
	}
	fs.BoolVar(p, name, v, usage+" ("+env+")")
}

func (fs *flagSet) durationVar(p *time.Duration, name, env string, def time.Duration, usage string) {
	v := def
	if s, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s: %q is not a duration (e.g. 5s)", env, s))
		}
		v = d
	}
	fs.DurationVar(p, name, v, usage+" ("+env+")")
}

// age is a duration that also reads whole days ("14d"), as retentions
// are said.
type age time.Duration

func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 && days < 1e5 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 14d or 336h)", s)
	}
	return d, nil
}

func (a *age) Set(s string) error {
	d, err := parseAge(s)
	*a = age(d)
	return err
}

func (a *age) String() string {
	if d := time.Duration(*a); d > 0 && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return time.Duration(*a).String()
}

// ageVar is durationVar for retentions: days or a Go duration.
func (fs *flagSet) ageVar(p *time.Duration, name, env string, def time.Duration, usage string) {
	*p = def
	if s, ok := os.LookupEnv(env); ok {
		d, err := parseAge(s)
		if err != nil {
			fs.errs = append(fs.errs, fmt.Errorf("%s: %w", env, err))
		}
		*p = d
	}
	fs.Var((*age)(p), name, usage+" ("+env+")")
}

// parse parses args; bad environment values are reported here too.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return errors.Join(fs.errs...)
}

func (s *settings) registerKafka(fs *flagSet) {
	fs.stringVar(&s.kafkaBrokers, "kafka-brokers", "HOOKSTREAM_KAFKA_BROKERS", "", "comma-separated Kafka seed brokers")
	fs.durationVar(&s.produceTimeout, "produce-timeout", "HOOKSTREAM_PRODUCE_TIMEOUT", 5*time.Second, "how long a request waits for the broker's acknowledgement before 503")
	s.registerKafkaSecurity(fs)
}

// registerKafkaSecurity: TLS and SASL, applied to every client the command
// creates.
func (s *settings) registerKafkaSecurity(fs *flagSet) {
	s.hasKafka = true
	k := &s.kafkaSecurity
	fs.boolVar(&k.TLS, "kafka-tls", "HOOKSTREAM_KAFKA_TLS", false, "dial the brokers over TLS (implied by the other kafka-tls flags)")
	fs.stringVar(&k.CAFile, "kafka-tls-ca", "HOOKSTREAM_KAFKA_TLS_CA", "", "PEM file of the CAs that sign the brokers' certificates (default: the system's roots)")
	fs.stringVar(&k.CertFile, "kafka-tls-cert", "HOOKSTREAM_KAFKA_TLS_CERT", "", "PEM client certificate for mutual TLS (with kafka-tls-key)")
	fs.stringVar(&k.KeyFile, "kafka-tls-key", "HOOKSTREAM_KAFKA_TLS_KEY", "", "PEM key of kafka-tls-cert")
	fs.stringVar(&k.SASLMechanism, "kafka-sasl-mechanism", "HOOKSTREAM_KAFKA_SASL_MECHANISM", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512 (default: no SASL)")
	fs.stringVar(&k.SASLUser, "kafka-sasl-user", "HOOKSTREAM_KAFKA_SASL_USER", "", "SASL user name")
	fs.stringVar(&k.SASLPassword, "kafka-sasl-password", "HOOKSTREAM_KAFKA_SASL_PASSWORD", "", "SASL password (prefer the variable: a flag shows in the process list)")
}

func (s *settings) registerDatabase(fs *flagSet) {
	fs.stringVar(&s.databaseURL, "database-url", "HOOKSTREAM_DATABASE_URL", "", "PostgreSQL URL")
}

func (s *settings) registerPartitions(fs *flagSet) {
	s.hasPartitions = true
	fs.intVar(&s.partitions, "partitions", "HOOKSTREAM_PARTITIONS", 12, "partitions of hookstream.events and hookstream.dlq when creating them")
}

// registerDurability: the replication factor and min.insync.replicas of
// the topics a command creates (internal/topics, Config.Durability), and
// their retention (topics.go).
func (s *settings) registerDurability(fs *flagSet) {
	s.hasDurability = true
	s.topicRetention.register(fs)
	fs.intVar(&s.replication, "replication-factor", "HOOKSTREAM_REPLICATION_FACTOR", 0, "replication factor of new topics (0: min(3, brokers); -1: the broker's default)")
	fs.intVar(&s.minInsync, "min-insync-replicas", "HOOKSTREAM_MIN_INSYNC_REPLICAS", 0, "min.insync.replicas of new topics (0: 2 when the replication factor is 3 or more, else 1)")
}

// topicsConfig is what the command's flags ask of the topics.
func (s *settings) topicsConfig() topics.Config {
	return s.topicRetention.apply(topics.Config{Partitions: int32(s.partitions), ReplicationFactor: int16(s.replication), MinInsyncReplicas: s.minInsync})
}

func (s *settings) registerServer(fs *flagSet, defaultAddr string) {
	fs.stringVar(&s.httpAddr, "http-addr", "HOOKSTREAM_HTTP_ADDR", defaultAddr, "HTTP listen address")
	fs.stringVar(&s.adminToken, "admin-token", "HOOKSTREAM_ADMIN_TOKEN", "", "bearer token of the admin API (disabled when empty)")
	fs.stringVar(&s.trustedProxies, "trusted-proxies", "HOOKSTREAM_TRUSTED_PROXIES", "", "comma-separated addresses or CIDR prefixes of the proxies or load balancers in front of the receiver, whose X-Forwarded-For names the client (empty: the connection's peer is the client)")
	fs.stringVar(&s.adminAddr, "admin-addr", "HOOKSTREAM_ADMIN_ADDR", "", "listen address of the admin API, /metrics and a detailed /readyz, apart from the receiver's (empty: all on http-addr)")
	fs.stringVar(&s.sourcesFile, "sources", "HOOKSTREAM_SOURCES", "", "YAML sources file")
	fs.stringVar(&s.instance, "instance", "HOOKSTREAM_INSTANCE", defaultInstance(), "name of this process in audit records")
	fs.durationVar(&s.shutdownGrace, "shutdown-grace", "HOOKSTREAM_SHUTDOWN_GRACE", 30*time.Second, "how long shutdown waits for in-flight requests")
}

func (s *settings) registerLog(fs *flagSet, defaultFormat string) {
	fs.stringVar(&s.logLevel, "log-level", "HOOKSTREAM_LOG_LEVEL", "info", "debug|info|warn|error")
	fs.stringVar(&s.logFormat, "log-format", "HOOKSTREAM_LOG_FORMAT", defaultFormat, "json|text")
}

func (s *settings) brokers() []string { return kafka.ParseBrokers(s.kafkaBrokers) }

// parse parses args into s and returns the logger they configure; a bad
// flag or variable is an error naming it.
func (s *settings) parse(fs *flagSet, args []string, stderr io.Writer) (*slog.Logger, error) {
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s.logger(stderr)
}

// parseFlags is parse for commands that log nothing: args and variables
// are parsed and checked.
func (s *settings) parseFlags(fs *flagSet, args []string) error {
	if err := fs.parse(args); err != nil {
		return err
	}
	return s.validate()
}

func (s *settings) validate() error {
	if s.hasPartitions && (s.partitions < 1 || s.partitions > 10000) {
		return fmt.Errorf("partitions (HOOKSTREAM_PARTITIONS): must be between 1 and 10000, got %d", s.partitions)
	}
	if s.hasDurability && (s.replication < -1 || s.replication > 100) {
		return fmt.Errorf("replication-factor (HOOKSTREAM_REPLICATION_FACTOR): must be -1 (the broker's default), 0 (min(3, brokers)) or up to 100, got %d", s.replication)
	}
	if s.hasDurability && (s.minInsync < 0 || s.minInsync > 100) {
		return fmt.Errorf("min-insync-replicas (HOOKSTREAM_MIN_INSYNC_REPLICAS): must be 0 (the default) or up to 100, got %d", s.minInsync)
	}
	if s.hasDurability && s.replication > 0 && s.minInsync > s.replication {
		return fmt.Errorf("min-insync-replicas (HOOKSTREAM_MIN_INSYNC_REPLICAS): %d is more than the replication factor %d: no write could be acknowledged", s.minInsync, s.replication)
	}
	if s.hasDurability {
		if err := s.topicRetention.validate(); err != nil {
			return err
		}
	}
	if s.adminToken != "" && len(s.adminToken) < minAdminToken {
		return fmt.Errorf("admin-token (HOOKSTREAM_ADMIN_TOKEN): must be at least %d bytes, got %d (e.g. openssl rand -hex 32)", minAdminToken, len(s.adminToken))
	}
	proxies, err := parsePrefixes(s.trustedProxies)
	if err != nil {
		return fmt.Errorf("trusted-proxies (HOOKSTREAM_TRUSTED_PROXIES): %w", err)
	}
	s.proxies = proxies
	if s.produceTimeout < 0 {
		return fmt.Errorf("produce-timeout (HOOKSTREAM_PRODUCE_TIMEOUT): must be positive, got %s", s.produceTimeout)
	}
	if s.hasKafka {
		opts, err := s.kafkaSecurity.Opts()
		if err != nil {
			return err
		}
		s.kafkaOpts = opts
	}
	return nil
}

// minAdminToken is the shortest admin token accepted, as for the sources'
// secrets: a token an attacker may try guesses against.
const minAdminToken = 16

// parsePrefixes parses a comma-separated list of addresses (each its own
// prefix) and CIDR prefixes.
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or a CIDR prefix", f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or a CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// kafkaConfig is how this command's clients reach the brokers; clientID
// names the client in broker logs and in the client_id label of its metrics.
func (s *settings) kafkaConfig(clientID string) kafka.Config {
	return kafka.Config{Brokers: s.brokers(), ClientID: clientID, Opts: s.kafkaOpts}
}

func (s *settings) logger(w io.Writer) (*slog.Logger, error) {
	if s.logLevel == "" { // a command without log flags
		s.logLevel, s.logFormat = "info", "text"
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return nil, fmt.Errorf("log-level (HOOKSTREAM_LOG_LEVEL): %q is not one of debug, info, warn, error", s.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch s.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format (HOOKSTREAM_LOG_FORMAT): %q is not json or text", s.logFormat)
}

func defaultInstance() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "hookstream"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}

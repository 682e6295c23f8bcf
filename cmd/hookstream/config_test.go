package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad configuration stops the process at start with a message naming the
// flag, variable or field.
func TestBadConfigNamesTheField(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("sources:\n  - name: s\n    scheme: stripe\n    customer_id: {pointer: /c}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "good.yaml")
	if err := os.WriteFile(good, []byte("sources:\n  - name: s\n    scheme: stripe\n    secrets: [whsec_0123456789abcdef]\n    customer_id: {pointer: /c}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"serve"}, nil, "sources (HOOKSTREAM_SOURCES): required"},
		{[]string{"serve", "--sources", bad}, nil, "sources[0] (s).scheme: scheme stripe needs at least one secret"},
		{[]string{"serve", "--sources", "/nonexistent.yaml"}, nil, "sources file"},
		{[]string{"topics"}, map[string]string{"HOOKSTREAM_PARTITIONS": "many"}, `HOOKSTREAM_PARTITIONS: "many" is not an integer`},
		{[]string{"topics", "--partitions", "0"}, nil, "partitions (HOOKSTREAM_PARTITIONS): must be between 1 and 10000"},
		{[]string{"topics"}, map[string]string{"HOOKSTREAM_MIN_INSYNC_REPLICAS": "two"}, `HOOKSTREAM_MIN_INSYNC_REPLICAS: "two" is not an integer`},
		{[]string{"topics", "--replication-factor", "-3"}, nil, "replication-factor (HOOKSTREAM_REPLICATION_FACTOR): must be -1"},
		{[]string{"dev", "--replication-factor", "2", "--min-insync-replicas", "3"}, nil, "min-insync-replicas (HOOKSTREAM_MIN_INSYNC_REPLICAS): 3 is more than the replication factor 2"},
		{[]string{"serve", "--sources", bad}, map[string]string{"HOOKSTREAM_PRODUCE_TIMEOUT": "soon"}, `HOOKSTREAM_PRODUCE_TIMEOUT: "soon" is not a duration`},
		{[]string{"consume"}, map[string]string{"HOOKSTREAM_LOG_LEVEL": "loud"}, "log-level (HOOKSTREAM_LOG_LEVEL)"},
		{[]string{"consume"}, nil, "database-url (HOOKSTREAM_DATABASE_URL): required"},
		{[]string{"migrate"}, nil, "database-url (HOOKSTREAM_DATABASE_URL): required"},
		{[]string{"maintain", "--database-url", "postgres://nowhere/db", "--events-retention", "2h"}, nil, "events-retention (HOOKSTREAM_EVENTS_RETENTION): must be at least 1d"},
		{[]string{"maintain"}, map[string]string{"HOOKSTREAM_EVENTS_RETENTION": "two weeks"}, `HOOKSTREAM_EVENTS_RETENTION: "two weeks" is not a duration (e.g. 14d or 336h)`},
		{[]string{"maintain", "--database-url", "postgres://nowhere/db", "--audit-retention", "12h"}, nil, "audit-retention (HOOKSTREAM_AUDIT_RETENTION): must be at least 1d"},
		{[]string{"consume", "--database-url", "postgres://nowhere/db"}, map[string]string{"HOOKSTREAM_AUDIT_RETENTION": "0d"}, "audit-retention (HOOKSTREAM_AUDIT_RETENTION): must be at least 1d"},
		{[]string{"maintain"}, map[string]string{"HOOKSTREAM_AUDIT_RETENTION": "a quarter"}, `HOOKSTREAM_AUDIT_RETENTION: "a quarter" is not a duration (e.g. 14d or 336h)`},
		{[]string{"topics", "--dlq-topic-retention", "3x"}, nil, `invalid value "3x" for flag -dlq-topic-retention`},
		{[]string{"replay", "--status", "LOST"}, nil, `--status: "LOST" is not FAILED or DEAD`},
		{[]string{"replay"}, nil, "give exactly one of"},
		{[]string{"replay", "--event-id", "e"}, nil, "--event-id needs --source"},
		{[]string{"nope"}, nil, `unknown command "nope"`},
		{[]string{"serve", "--sources", good, "--admin-token", "short-token"}, nil, "admin-token (HOOKSTREAM_ADMIN_TOKEN): must be at least 16 bytes, got 11"},
		{[]string{"serve", "--sources", good}, map[string]string{"HOOKSTREAM_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, `trusted-proxies (HOOKSTREAM_TRUSTED_PROXIES): "proxy.local" is not an address or a CIDR prefix`},
		{[]string{"serve", "--sources", bad}, map[string]string{"HOOKSTREAM_KAFKA_SASL_MECHANISM": "gssapi"}, `kafka-sasl-mechanism (HOOKSTREAM_KAFKA_SASL_MECHANISM): "gssapi" is not one of plain, scram-sha-256, scram-sha-512`},
		{[]string{"consume", "--kafka-tls-ca", "/nonexistent/ca.pem"}, nil, "kafka-tls-ca (HOOKSTREAM_KAFKA_TLS_CA): open /nonexistent/ca.pem"},
		{[]string{"topics", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "u"}, nil, "kafka-sasl-password (HOOKSTREAM_KAFKA_SASL_PASSWORD): required"},
		{[]string{"replay", "--status", "DEAD"}, map[string]string{"HOOKSTREAM_KAFKA_TLS": "yes please"}, `HOOKSTREAM_KAFKA_TLS: "yes please" is not a boolean`},
		{[]string{"audit", "tail"}, map[string]string{"HOOKSTREAM_KAFKA_SASL_MECHANISM": "md5"}, "kafka-sasl-mechanism (HOOKSTREAM_KAFKA_SASL_MECHANISM)"},
		{[]string{"serve", "--sources", good}, map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, `OTEL_TRACES_EXPORTER: "zipkin" is not otlp, console or none`},
		{[]string{"consume", "--database-url", "postgres://nowhere/db"}, map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1%"}, "OTEL_TRACES_SAMPLER"},
	}
	for _, c := range cases {
		for _, k := range []string{"HOOKSTREAM_SOURCES", "HOOKSTREAM_DATABASE_URL", "HOOKSTREAM_KAFKA_BROKERS", "HOOKSTREAM_PARTITIONS", "HOOKSTREAM_REPLICATION_FACTOR", "HOOKSTREAM_MIN_INSYNC_REPLICAS", "HOOKSTREAM_PRODUCE_TIMEOUT", "HOOKSTREAM_LOG_LEVEL",
			"HOOKSTREAM_KAFKA_TLS", "HOOKSTREAM_KAFKA_TLS_CA", "HOOKSTREAM_KAFKA_SASL_MECHANISM", "HOOKSTREAM_KAFKA_SASL_USER", "HOOKSTREAM_KAFKA_SASL_PASSWORD",
			"OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED", "HOOKSTREAM_ADMIN_TOKEN", "HOOKSTREAM_TRUSTED_PROXIES", "HOOKSTREAM_EVENTS_RETENTION", "HOOKSTREAM_AUDIT_RETENTION"} {
			t.Setenv(k, "")
			_ = os.Unsetenv(k)
		}
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v %v: exit %d, stderr %q, want it to contain %q", c.args, c.env, code, stderr.String(), c.want)
		}
	}
}

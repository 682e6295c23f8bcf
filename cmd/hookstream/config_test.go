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
		{[]string{"serve", "--sources", bad}, map[string]string{"HOOKSTREAM_PRODUCE_TIMEOUT": "soon"}, `HOOKSTREAM_PRODUCE_TIMEOUT: "soon" is not a duration`},
		{[]string{"consume"}, map[string]string{"HOOKSTREAM_LOG_LEVEL": "loud"}, "log-level (HOOKSTREAM_LOG_LEVEL)"},
		{[]string{"consume"}, nil, "database-url (HOOKSTREAM_DATABASE_URL): required"},
		{[]string{"migrate"}, nil, "database-url (HOOKSTREAM_DATABASE_URL): required"},
		{[]string{"replay", "--status", "LOST"}, nil, `--status: "LOST" is not FAILED or DEAD`},
		{[]string{"replay"}, nil, "give exactly one of"},
		{[]string{"replay", "--event-id", "e"}, nil, "--event-id needs --source"},
		{[]string{"nope"}, nil, `unknown command "nope"`},
	}
	for _, c := range cases {
		for _, k := range []string{"HOOKSTREAM_SOURCES", "HOOKSTREAM_DATABASE_URL", "HOOKSTREAM_KAFKA_BROKERS", "HOOKSTREAM_PARTITIONS", "HOOKSTREAM_PRODUCE_TIMEOUT", "HOOKSTREAM_LOG_LEVEL"} {
			t.Setenv(k, "")
			os.Unsetenv(k)
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

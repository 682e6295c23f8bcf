package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/testenv"
)

// TestDestinationCredentialsNeverShown: a destination URL with a password
// and query tokens, failing both ways (an error answer, and no answer at
// all), leaves none of its credentials in last_error, the audit records,
// the dead letter's error header or the logs; each still says where the
// delivery went.
func TestDestinationCredentialsNeverShown(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	secrets := []string{"pa55word", "t0ken", "s1gnature"}
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a port nothing answers on once closed
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	_ = ln.Close()
	withCreds := func(hostport string) string {
		return fmt.Sprintf("http://hookuser:pa55word@%s/hook?token=t0ken&sig=s1gnature", hostport)
	}
	srcs := []sources.Source{
		{Name: "answers", Destination: &sources.Destination{URL: withCreds(strings.TrimPrefix(failing.URL, "http://")), Timeout: 5 * time.Second}},
		{Name: "refuses", Destination: &sources.Destination{URL: withCreds(refused), Timeout: 5 * time.Second}},
	}
	logs := &testenv.LogBuffer{}
	c, err := consumer.New(consumer.Config{
		Brokers: tb.brokers, Pool: tb.pool, Audit: audit.Writer{}, Group: tb.group, Topics: tb.topics,
		Deliverer: consumer.NewDestinations(srcs, nil, 4), Concurrency: 4, Instance: "test",
		Retry:  func(string) consumer.RetryPolicy { return consumer.RetryPolicy{MaxAttempts: 1} },
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	tb.produce("answers", "evt_answers", "cus_a", 0)
	tb.produce("refuses", "evt_refuses", "cus_r", 0)
	tb.flush()
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM events WHERE status = 'DEAD'`)
	tb.waitFor(time.Minute, 2, `SELECT count(*) FROM audit_log WHERE action = 'DEAD_LETTERED'`)

	shown := map[string]string{} // where -> what it shows
	rows, err := tb.pool.Query(context.Background(), `SELECT event_id, last_error FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, msg string
		if err := rows.Scan(&id, &msg); err != nil {
			t.Fatal(err)
		}
		shown["last_error of "+id] = msg
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = tb.pool.Query(context.Background(), `SELECT event_id || ' ' || action, detail::text FROM audit_log WHERE detail ? 'error'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var what, detail string
		if err := rows.Scan(&what, &detail); err != nil {
			t.Fatal(err)
		}
		shown["audit "+what] = detail
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i, r := range deadLetters(t, tb, 2) {
		for _, h := range r.Headers {
			if h.Key == "error" {
				shown[fmt.Sprintf("dead letter %d", i)] = string(h.Value)
			}
		}
	}
	shown["logs"] = logs.String()
	if len(shown) != 2+4+2+1 {
		t.Errorf("looked at %d places, want 9: %v", len(shown), shown)
	}
	for where, text := range shown {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the destination's credential %q: %s", where, s, text)
			}
		}
		if !strings.Contains(text, "REDACTED") {
			t.Errorf("%s does not name the (redacted) destination: %s", where, text)
		}
	}
}

// deadLetters reads n records of the dead-letter topic.
func deadLetters(t *testing.T, tb *testBundle, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(tb.brokers...), kgo.ConsumeTopics(tb.topics.DLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d dead letters, want %d", len(recs), n)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

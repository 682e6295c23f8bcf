package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/internal/testenv"
)

// `audit verify` exits 1 and names the event when a decision is missing
// from both the topic and the table (which agree with each other).
func TestAuditVerifyExitsOneOnAMissingDecision(t *testing.T) {
	t.Parallel()
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testTopics(ctx, t, broker.Addrs(), 1)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, status, received_at) VALUES ('generic', 'evt_unaudited', 'c', 'PROCESSING', now())`); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"audit", "verify", "--database-url", dbURL, "--kafka-brokers", strings.Join(broker.Addrs(), ",")}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "1 decisions missing") {
		t.Fatalf("exit %d, stderr %q: want 1 and the count", code, stderr.String())
	}
	var rep struct {
		MissingDecisions []struct {
			EventID     string   `json:"event_id"`
			Action      string   `json:"action"`
			MissingFrom []string `json:"missing_from"`
		} `json:"missing_decisions"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if len(rep.MissingDecisions) != 1 || rep.MissingDecisions[0].EventID != "evt_unaudited" || rep.MissingDecisions[0].Action != "ACCEPTED" ||
		strings.Join(rep.MissingDecisions[0].MissingFrom, ",") != "table,topic" {
		t.Fatalf("report %s", stdout.String())
	}
}

package migrate_test

import (
	"context"
	"log/slog"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/audit/audittest"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/migrate"
	"github.com/hookstream/hookstream/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// emptyDatabase creates a database with no migrations applied, on the
// server of a test database, and returns its URL.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	base := testenv.Postgres(t)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := "empty_" + uuid.NewString()[:8]
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestAuditOutboxCarriedOver: rows waiting in the old outbox table when
// migration 3 replaces it with the relay's cursor are published once by
// the new relay; rows already published are not published again.
func TestAuditOutboxCarriedOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := emptyDatabase(t)
	if _, err := migrate.UpTo(ctx, dbURL, 2); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Two published rows (no longer in the outbox) and three waiting.
	for i := range 5 {
		_, err := conn.Exec(ctx, `WITH a AS (INSERT INTO audit_log (audit_id, event_id, source, customer_id, action, actor, instance, at)
VALUES ($1, $2, 'generic', 'c', 'PROCESSED', 'consumer', 'old', now()) RETURNING seq)
INSERT INTO audit_outbox (seq) SELECT seq FROM a WHERE $3`, uuid.New(), "e"+string(rune('0'+i)), i >= 2)
		if err != nil {
			t.Fatal(err)
		}
	}
	applied, err := migrate.Up(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) == 0 {
		t.Fatal("nothing applied after version 2")
	}

	brokers := testenv.Kafka(t)
	tp := testenv.TopicsN(t, brokers, 1)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	relay, err := audit.NewRelay(audit.RelayConfig{Pool: pool, Producer: producer, Topic: tp.Audit, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	total := audittest.Publish(t, relay, conn, 3)
	if n, err := relay.PublishOnce(ctx, conn); err != nil || n != 0 {
		t.Fatalf("another round published %d (%v), want 0", n, err)
	}
	if total != 3 {
		t.Fatalf("published %d rows, want the 3 that were waiting", total)
	}
	var events []string
	rows, err := conn.Query(ctx, `SELECT a.event_id FROM audit_log a, audit_relay c WHERE (a.xid, a.seq) <= (c.xid, c.seq) ORDER BY a.seq`)
	if err != nil {
		t.Fatal(err)
	}
	events, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || events[0] != "e2" || events[2] != "e4" {
		t.Fatalf("published rows %v, want e2 e3 e4", events)
	}
}

package migrate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"testing"
	"time"

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
	defer func() { _ = conn.Close(ctx) }()
	name := "empty_" + uuid.NewString()[:8]
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(context.Background())
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// databaseAt is an empty database migrated up to version, and a
// connection to it closed when the test ends.
func databaseAt(t *testing.T, version int64) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	dbURL := emptyDatabase(t)
	if _, err := migrate.UpTo(ctx, dbURL, version); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return dbURL, conn
}

// TestAuditOutboxCarriedOver: rows waiting in the old outbox table when
// migration 3 replaces it with the relay's cursor are published once by
// the new relay; rows already published are not published again.
func TestAuditOutboxCarriedOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 2)
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

	if got := publishAll(t, dbURL); fmt.Sprint(got) != "[e2 e3 e4]" {
		t.Fatalf("published %v, want the 3 rows that were waiting: e2 e3 e4", got)
	}
}

// publishAll runs a relay on the database at dbURL until it has published
// every committed audit row, and returns the event ids it published, in
// order, as a reader of the topic sees them.
func publishAll(t *testing.T, dbURL string) []string {
	t.Helper()
	brokers := testenv.Kafka(t)
	tp := testenv.TopicsN(t, brokers, 1)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	relay, err := audit.NewRelay(audit.RelayConfig{Pool: pool, Kafka: kafka.Config{Brokers: brokers}, Topic: tp.Audit, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	audittest.Drain(t, relay, pool)
	if n := audittest.Drain(t, relay, pool); n != 0 {
		t.Fatalf("a second run published %d rows, want 0", n)
	}
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = audit.Tail(ctx, audit.TailOptions{Brokers: brokers, Topic: tp.Audit}, writerFunc(func(p []byte) (int, error) {
		var a struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(p, &a); err != nil {
			return 0, err
		}
		got = append(got, a.EventID)
		return len(p), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestAuditCursorCarriedOverToCommitOrder: rows the relay of migration 3
// had not published when migration 5 moves the relay to commit order are
// published once, in the order the old relay would have given them, the
// rest of a transaction it had published in part included; rows it had
// published are not published again, and rows written after the
// migration follow.
func TestAuditCursorCarriedOverToCommitOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 3)
	// Three transactions: a b | c d | e; the old relay had published up
	// to c.
	write := func(conn *pgx.Conn, ids ...string) {
		t.Helper()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, id := range ids {
				if _, err := tx.Exec(ctx, `INSERT INTO audit_log (audit_id, event_id, source, customer_id, action, actor, instance, at)
VALUES ($1, $2, 'generic', 'c', 'PROCESSED', 'consumer', 'old', now())`, uuid.New(), id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write(conn, "a", "b")
	write(conn, "c", "d")
	write(conn, "e")
	if _, err := conn.Exec(ctx, `UPDATE audit_relay SET (xid, seq) = (SELECT xid, seq FROM audit_log WHERE event_id = 'c')`); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Up(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	write(conn, "f")
	if got := publishAll(t, dbURL); fmt.Sprint(got) != "[d e f]" {
		t.Fatalf("published %v, want d e f", got)
	}
}

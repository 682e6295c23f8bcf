package migrate_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/migrate"
)

// TestSignedDigestIndexOnPopulatedLog: migration 6 builds its index on an
// audit_log that already holds rows, some with a signed digest (a
// receiver upgraded before the migration ran), and the receiver's replay
// look-up finds those.
func TestSignedDigestIndexOnPopulatedLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, conn := databaseAt(t, 5)
	_, err := conn.Exec(ctx, `INSERT INTO audit_log (audit_id, event_id, source, customer_id, action, actor, instance, at, detail)
SELECT gen_random_uuid(), 'e' || i, 'github', 'c', 'ACCEPTED', 'ingest', 'old', now() - interval '1 hour',
       CASE WHEN i % 2 = 0 THEN jsonb_build_object('signed_sha256', 'd' || i) ELSE '{}'::jsonb END
FROM generate_series(1, 2000) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Up(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	var valid bool
	if err := conn.QueryRow(ctx, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = 'audit_log_signed_idx'`).Scan(&valid); err != nil || !valid {
		t.Fatalf("audit_log_signed_idx: valid %v, %v", valid, err)
	}
	// A row written after the migration is found too.
	_, err = conn.Exec(ctx, `INSERT INTO audit_log (audit_id, event_id, source, customer_id, action, actor, instance, at, detail)
VALUES ($1, 'late', 'github', 'c', 'ACCEPTED', 'ingest', 'new', now(), '{"signed_sha256":"dlate"}')`, uuid.New())
	if err != nil {
		t.Fatal(err)
	}

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	dups := ingest.NewPostgresDuplicates(pool, ingest.PostgresDuplicatesConfig{Timeout: 10 * time.Second})
	defer dups.Close()
	for _, c := range []struct{ id, digest, want string }{
		{"new", "d2", "e2"}, {"new", "dlate", "late"}, {"e2", "d2", ""}, {"new", "d1", ""}, {"new", "d3", ""},
	} {
		done := make(chan string, 1)
		dups.LookupSigned("github", c.id, c.digest, func(_ ingest.Status, replayOf string, err error) {
			if err != nil {
				t.Error(err)
			}
			done <- replayOf
		})
		if got := <-done; got != c.want {
			t.Errorf("%s under %s: replay of %q, want %q", c.digest, c.id, got, c.want)
		}
	}
	// Outside the window it is not a replay.
	short := ingest.NewPostgresDuplicates(pool, ingest.PostgresDuplicatesConfig{Timeout: 10 * time.Second, ReplayWindow: time.Minute})
	defer short.Close()
	done := make(chan string, 1)
	short.LookupSigned("github", "new", "d2", func(_ ingest.Status, replayOf string, _ error) { done <- replayOf })
	if got := <-done; got != "" {
		t.Errorf("a digest older than the window: replay of %q, want none", got)
	}
}

package devstack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// As root, with the data dir under a directory the postgres user cannot
// enter (like a clone under /root), the server still starts: its files go
// elsewhere and the data dir links to them; stopped and started again, the
// data is still there.
func TestPostgresAsRootUnderClosedParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root has to hand PostgreSQL to another user")
	}
	if _, err := findBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	closed, err := os.MkdirTemp("", "hookstream-closed-") // mode 0700, owned by root
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(closed, "pg")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(dir)
	t.Cleanup(func() {
		_ = pg.Stop(context.Background())
		os.RemoveAll(closed)
		if target != "" {
			os.RemoveAll(target)
		}
	})
	if err != nil || !strings.Contains(target, "hookstream-postgres-") {
		t.Fatalf("data dir is not a link to the server's files: %q %v", target, err)
	}
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	pg2, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pg = pg2
	conn, err = pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM kept`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after a restart: %d rows, %v", n, err)
	}
}

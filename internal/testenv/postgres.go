package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/migrate"
)

// pgShared is the test binary's PostgreSQL server and its migrated
// template database.
var pgShared struct {
	once     sync.Once
	source   string        // where the server came from, for the log
	server   string        // connection string of the server's own database
	admin    *pgxpool.Pool // CREATE/DROP DATABASE
	template string
	err      error
}

// Postgres returns the connection URL of a database of this test's own:
// migrated, empty, and dropped when the test ends (connections still open
// then are terminated).
func Postgres(t testing.TB) string {
	t.Helper()
	ran := false
	pgShared.once.Do(func() {
		ran = true
		pgShared.err = preparePostgres()
	})
	if pgShared.err != nil {
		unavailable(t, "PostgreSQL: %v", pgShared.err)
	}
	if ran {
		t.Logf("testenv: PostgreSQL from %s", pgShared.source)
	}
	name := "test_" + randomSuffix()
	ident := pgx.Identifier{name}.Sanitize()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A clone is a file copy of the template, no migration per test. The
	// template takes no connections (see preparePostgres), so clones made
	// in parallel never find it busy.
	if _, err := pgShared.admin.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE "+pgx.Identifier{pgShared.template}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pgShared.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(pgShared.server, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return u
}

// PostgresPool is a pool on a database of this test's own (Postgres),
// closed when the test ends, before the database is dropped.
func PostgresPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), Postgres(t))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// preparePostgres gets the server and makes the migrated template.
func preparePostgres() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	server, source, err := startPostgres(ctx)
	if err != nil {
		return err
	}
	pgShared.server, pgShared.source = server, source
	cfg, err := pgxpool.ParseConfig(server)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	cfg.MaxConns = 4
	admin, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	atExit(admin.Close)
	pgShared.admin = admin
	if err := admin.Ping(ctx); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}

	tmpl := "hookstream_template_" + randomSuffix()
	ident := pgx.Identifier{tmpl}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return fmt.Errorf("%s: create template database: %w", source, err)
	}
	atExit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	})
	tmplURL, err := withDatabase(server, tmpl)
	if err != nil {
		return err
	}
	if _, err := migrate.Up(ctx, tmplURL); err != nil {
		return fmt.Errorf("%s: migrate the template database: %w", source, err)
	}
	// CREATE DATABASE ... TEMPLATE fails while anyone is connected to the
	// template; with connections refused nobody ever is.
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+ident+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	pgShared.template = tmpl
	return nil
}

// startPostgres returns a server's connection string and where it came from.
func startPostgres(ctx context.Context) (server, source string, err error) {
	if u := os.Getenv("HOOKSTREAM_TEST_DATABASE_URL"); u != "" {
		return u, "HOOKSTREAM_TEST_DATABASE_URL", nil
	}
	dockerErr := dockerEngine()
	if dockerErr == nil {
		u, err := startPostgresContainer(ctx)
		return u, "testcontainers (" + postgresImage + ")", err
	}
	if requireDocker() {
		return "", "", fmt.Errorf("HOOKSTREAM_TEST_DOCKER is set: %w", dockerErr)
	}
	// Directly in the temporary directory, not in a directory of ours
	// there: when the tests run as root the server runs as the postgres
	// user, which may then remove the directory itself (sticky /tmp lets an
	// owner), and its watchdog can clean up after a killed test binary.
	dir, err := os.MkdirTemp("", "hookstream-testpg-")
	if err != nil {
		return "", "", err
	}
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresConfig{DataDir: dir, NoSync: true, Ephemeral: true})
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("%w; no Docker engine either (%v); or set HOOKSTREAM_TEST_DATABASE_URL", err, dockerErr)
	}
	atExit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pg.Close(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop PostgreSQL: %v\n", err)
		}
	})
	return pg.URL(), "the machine's PostgreSQL binaries (devstack, " + dir + ")", nil
}

// withDatabase returns the connection string conn pointing at database
// name; conn is a URL (postgres://...) or keyword/value ("host=... ").
func withDatabase(conn, name string) (string, error) {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		if err != nil {
			return "", fmt.Errorf("database URL: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	if strings.Contains(conn, "=") || strings.TrimSpace(conn) == "" {
		// Of repeated keys the last wins.
		return conn + " dbname=" + name, nil
	}
	return "", errors.New("database connection string is neither a postgres:// URL nor keyword=value pairs")
}

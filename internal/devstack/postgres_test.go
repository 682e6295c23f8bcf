package devstack

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// needBinaries skips the test (fails it under CI) when this machine has no
// PostgreSQL server binaries.
func needBinaries(t *testing.T) {
	t.Helper()
	if _, err := findBinaries("", os.Getenv("PATH"), binGlobs); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// dataDir returns a data directory whose path has a space in it (pg_ctl
// runs the server through a shell). Not under t.TempDir: that is mode
// 0700, closed to the postgres user when the tests run as root.
func dataDir(t *testing.T) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "devstack-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	return filepath.Join(parent, "pg data")
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func exec1(t *testing.T, url, sql string) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, url, table string) int {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func answers(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false
	}
	_ = conn.Close(ctx)
	return true
}

// An outage test's cycle: stop, the server is gone, start on the same port,
// the data is there.
func TestPostgresStopStartKeepsData(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dataDir(t), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	url := pg.URL()
	exec1(t, url, `CREATE TABLE kept (x int); INSERT INTO kept VALUES (1), (2)`)
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if answers(url) {
		t.Fatal("the server answers after Stop")
	}
	if err := pg.Stop(ctx); err != nil {
		t.Fatalf("Stop when stopped: %v", err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if pg.URL() != url {
		t.Fatalf("URL changed across Stop/Start: %s, was %s", pg.URL(), url)
	}
	if n := count(t, url, "kept"); n != 2 {
		t.Fatalf("%d rows after a restart, want 2", n)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatalf("Start when running: %v", err)
	}
}

// One owner per data directory: a second StartPostgres while the first
// runs fails and leaves it alone; after Stop the directory is free again.
func TestPostgresDataDirIsExclusive(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	dir := dataDir(t)
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	if _, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true}); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second server on the same directory: %v, want ErrDataDirInUse", err)
	}
	if !answers(pg.URL()) {
		t.Fatal("the first server was disturbed")
	}
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	pg2, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatalf("after Stop: %v", err)
	}
	defer func() { _ = pg2.Close(ctx) }()
	if err := pg.Start(ctx); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("Start of the first while the second runs: %v, want ErrDataDirInUse", err)
	}
}

// `hookstream dev` killed with SIGKILL leaves its server running; the next
// run takes it over and the data is there.
func TestPostgresRestartsServerOrphanedByKilledParent(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	dir := dataDir(t)
	helper, orphanURL := startHelper(t, "persistent", dir)
	exec1(t, orphanURL, `CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)`)
	killHelper(t, helper)
	if !answers(orphanURL) {
		t.Fatal("the orphaned server is not running; the test does not test what it says")
	}
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	if n := count(t, pg.URL(), "kept"); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	if pg.URL() != orphanURL && answers(orphanURL) {
		t.Error("the orphan still answers on its old port")
	}
}

// The postmaster itself killed with SIGKILL (postmaster.pid stays behind,
// backends linger for a moment): Start recovers.
func TestPostgresStartAfterServerKilled(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dataDir(t), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	// CHECKPOINT: with NoSync a commit may still be in WAL buffers when
	// the server dies; what is asserted here is recovery, not NoSync.
	exec1(t, pg.URL(), `CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)`)
	exec1(t, pg.URL(), `CHECKPOINT`) // after the commit: one query string is one transaction
	pidFile, err := os.ReadFile(filepath.Join(pg.Dir(), "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until the postmaster has exited (a zombie counts as exited), pg_ctl
	// rightly reports it running and Start leaves it be.
	eventually(t, 30*time.Second, "the killed server is still running", func() bool {
		running, err := pg.running(ctx)
		return err == nil && !running && !answers(pg.URL())
	})
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pg.URL(), "kept"); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}

// An Ephemeral server's parent (a test binary) dies without cleaning up:
// the watchdog stops the server and removes its files.
func TestPostgresEphemeralGoneWhenParentKilled(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	// Directly in the temporary directory, as testenv does: the watchdog
	// runs as the server user, who may remove DataDir itself only from a
	// parent that lets it (sticky /tmp does, for its own directory).
	dir, err := os.MkdirTemp("", "devstack-ephemeral-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	helper, url := startHelper(t, "ephemeral", dir)
	if !answers(url) {
		t.Fatal("the helper's server does not answer")
	}
	killHelper(t, helper)
	eventually(t, time.Minute, "the server still answers or its files are still there", func() bool {
		_, err := os.Lstat(dir)
		return errors.Is(err, os.ErrNotExist) && !answers(url)
	})
}

func TestPostgresEphemeralClose(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	dir := dataDir(t)
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true, Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	url := pg.URL()
	if err := pg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after Close: %v", dir, err)
	}
	if answers(url) {
		t.Error("the server answers after Close")
	}
	if err := pg.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// As root, with the data dir under a directory the postgres user cannot
// enter (like a clone under /root), the server still starts: its files go
// elsewhere and the data dir links to them; stopped and started again, the
// data is still there. A data dir that already holds files is not moved:
// that is an error naming the closed directory.
func TestPostgresAsRootUnderClosedParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root has to hand PostgreSQL to another user")
	}
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	closed, err := os.MkdirTemp("", "hookstream-closed-") // mode 0700, owned by root
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(closed, "pg")
	var target string
	t.Cleanup(func() {
		_ = os.RemoveAll(closed)
		if target != "" {
			_ = os.RemoveAll(target)
		}
	})
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	target, err = os.Readlink(dir)
	if err != nil || !strings.Contains(target, "hookstream-postgres-") || pg.Dir() != target {
		_ = pg.Close(ctx)
		t.Fatalf("data dir is not a link to the server's files: %q %v (server files in %s)", target, err, pg.Dir())
	}
	exec1(t, pg.URL(), `CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)`)
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	pg, err = StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	if n := count(t, pg.URL(), "kept"); n != 1 {
		t.Fatalf("after a restart: %d rows, want 1", n)
	}

	full := filepath.Join(closed, "full")
	if err := os.MkdirAll(filepath.Join(full, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = StartPostgres(ctx, PostgresConfig{DataDir: full, NoSync: true})
	if err == nil || !strings.Contains(err.Error(), closed+" (mode 0700") || !strings.Contains(err.Error(), "HOOKSTREAM_DATABASE_URL") {
		t.Fatalf("a full data dir the server user cannot reach: %v, want an error naming %s and the fixes", err, closed)
	}
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	_, err := findBinaries("", "", []string{filepath.Join(t.TempDir(), "*", "bin")})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("got %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"apt-get install postgresql", "HOOKSTREAM_DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}

	// Install directories sort by major version, not as strings.
	root := t.TempDir()
	for _, v := range []string{"9.6", "10", "15"} {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
			if err := os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	globs := []string{filepath.Join(root, "*", "bin")}
	if got, err := findBinaries("", "", globs); err != nil || got != filepath.Join(root, "15", "bin") {
		t.Errorf("newest: got %s, %v", got, err)
	}
	// An existing cluster needs its own major version.
	if got, err := findBinaries("10", "", globs); err != nil || got != filepath.Join(root, "10", "bin") {
		t.Errorf("for a version 10 cluster: got %s, %v", got, err)
	}
	if _, err := findBinaries("17", "", globs); err == nil || !strings.Contains(err.Error(), "PostgreSQL 17 cluster") {
		t.Errorf("for a version 17 cluster: %v", err)
	}
}

// A data directory too deep for a Unix socket path (107 bytes): the server
// runs on TCP only.
func TestPostgresLongDataDir(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	dir := filepath.Join(dataDir(t), strings.Repeat("d", 100))
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	if pg.sockDir != "" {
		t.Fatalf("socket directory %s (%d bytes) kept", pg.sockDir, len(pg.sockDir))
	}
	if !answers(pg.URL()) {
		t.Fatal("the server does not answer on TCP")
	}
}

// withoutPassword is url with the password taken out.
func withoutPassword(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// assertNeedsPassword: the server refuses the superuser without the
// password, over TCP and over its socket, and what it needs is in a file
// only its owner reads.
func assertNeedsPassword(t *testing.T, pg *Postgres) {
	t.Helper()
	if !answers(pg.URL()) {
		t.Fatal("the server refuses its own URL")
	}
	if answers(withoutPassword(t, pg.URL())) {
		t.Error("the server lets the superuser in over TCP without a password")
	}
	if pg.sockDir != "" && answers("host="+pg.sockDir+" port="+strconv.Itoa(pg.Port())+" user=postgres dbname=postgres") {
		t.Error("the server lets the superuser in over its socket without a password")
	}
	st, err := os.Stat(pg.PasswordFile())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("password file mode %04o, want 0600", st.Mode().Perm())
	}
	b, err := os.ReadFile(pg.PasswordFile())
	if err != nil || !strings.Contains(pg.URL(), ":"+strings.TrimSpace(string(b))+"@") {
		t.Errorf("the URL's password is not the file's (%v)", err)
	}
	hbaConf, err := os.ReadFile(filepath.Join(pg.pgdata, "pg_hba.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(hbaConf), "trust") {
		t.Errorf("pg_hba.conf trusts someone:\n%s", hbaConf)
	}
}

// TestPostgresNeedsPassword: the private server takes connections only
// with the password kept in its directory — not from every local user, as
// `trust` on 127.0.0.1 did — and a cluster made by an older version,
// trusting everyone and without a password file, is given one when it is
// next started.
func TestPostgresNeedsPassword(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	dir := dataDir(t)
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	assertNeedsPassword(t, pg)
	exec1(t, pg.URL(), `CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)`)
	if err := pg.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// What an older version left: pg_hba.conf trusting every local
	// connection, no password file.
	trust := "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
	if err := os.WriteFile(filepath.Join(pg.pgdata, "pg_hba.conf"), []byte(trust), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(pg.PasswordFile()); err != nil {
		t.Fatal(err)
	}
	oldPassword := pg.password
	pg2, err := StartPostgres(ctx, PostgresConfig{DataDir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg2.Close(ctx) }()
	assertNeedsPassword(t, pg2)
	old, err := url.Parse(pg2.URL())
	if err != nil {
		t.Fatal(err)
	}
	old.User = url.UserPassword("postgres", oldPassword)
	if pg2.password == oldPassword || answers(old.String()) {
		t.Error("the new password file holds the old password, or the server still takes it")
	}
	if n := count(t, pg2.URL(), "kept"); n != 1 {
		t.Errorf("%d rows after securing the cluster, want 1", n)
	}
}

// Settings reach the server, a value with a space and a quote intact
// (pg_ctl pastes its options into a shell command).
func TestPostgresSettings(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	ctx := ctxFor(t, 2*time.Minute)
	pg, err := StartPostgres(ctx, PostgresConfig{DataDir: dataDir(t), NoSync: true,
		Settings: []string{"work_mem=7MB", "application_name=it's a test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close(ctx) }()
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var workMem, name string
	if err := conn.QueryRow(ctx, `SELECT current_setting('work_mem'), (SELECT reset_val FROM pg_settings WHERE name = 'application_name')`).Scan(&workMem, &name); err != nil {
		t.Fatal(err)
	}
	if workMem != "7MB" || name != "it's a test" {
		t.Errorf("work_mem %q, application_name %q; want 7MB and it's a test", workMem, name)
	}
}

package devstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// PostgresConfig configures a private PostgreSQL server.
type PostgresConfig struct {
	// DataDir holds the cluster (data/), its socket (run/) and log. Required.
	DataDir string
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// NoSync trades durability for speed (initdb --no-sync, fsync=off):
	// for tests only.
	NoSync bool
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// Postgres is a running private server.
type Postgres struct {
	cfg    PostgresConfig
	bin    string
	port   int
	cred   *syscall.Credential
	pgdata string
	run    string
	log    string
}

// ErrNoBinaries: the PostgreSQL server binaries are not on this machine.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql) or set HOOKSTREAM_DATABASE_URL to an existing server")

// StartPostgres initialises the cluster on first use and starts it.
func StartPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("postgres: DataDir is required")
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if dir, err = reachableDir(ctx, cred, dir, cfg.Logf); err != nil {
			return nil, err
		}
	}
	p := &Postgres{cfg: cfg, bin: bin, cred: cred, pgdata: filepath.Join(dir, "data"), run: filepath.Join(dir, "run"), log: filepath.Join(dir, "postgres.log")}
	for _, d := range []string{dir, p.run} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if p.cred != nil {
			if err := os.Chown(d, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return nil, fmt.Errorf("postgres: %w", err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(p.pgdata, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		cfg.Logf("initdb %s", p.pgdata)
		args := []string{"-D", p.pgdata, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"}
		if cfg.NoSync {
			args = append(args, "--no-sync")
		}
		if out, err := p.command(ctx, filepath.Join(bin, "initdb"), args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("postgres: initdb: %w\n%s", err, out)
		}
	}
	// A server left running by a parent that was killed: stop it, so this
	// one starts with our settings.
	if err := p.command(ctx, filepath.Join(bin, "pg_ctl"), "status", "-D", p.pgdata).Run(); err == nil {
		cfg.Logf("stopping a PostgreSQL server left running in %s", p.pgdata)
		if err := p.Stop(ctx); err != nil {
			return nil, err
		}
	}
	p.port = cfg.Port
	if p.port == 0 {
		if p.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Start starts the server (again) on the same port and data.
func (p *Postgres) Start(ctx context.Context) error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=200 -c shared_buffers=128MB", p.port, p.run)
	if p.cfg.NoSync {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	out, err := p.command(ctx, filepath.Join(p.bin, "pg_ctl"), "start", "-w", "-t", "60", "-D", p.pgdata, "-l", p.log, "-o", opts).CombinedOutput()
	if err != nil {
		tail, _ := os.ReadFile(p.log)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("postgres: pg_ctl start: %w\n%s\nlog %s:\n%s", err, out, p.log, tail)
	}
	return nil
}

// Stop stops the server (fast shutdown: sessions end, data is safe).
func (p *Postgres) Stop(ctx context.Context) error {
	out, err := p.command(ctx, filepath.Join(p.bin, "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", p.pgdata).CombinedOutput()
	if err != nil {
		return fmt.Errorf("postgres: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// URL is a connection URL for the superuser and the postgres database.
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// Port is the server's TCP port.
func (p *Postgres) Port() int { return p.port }

// command runs as the server user, in its own process group so that a
// terminal's Ctrl-C reaches hookstream (which then stops the server in
// order) and not the server directly.
func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if p.cred != nil {
		cmd.Env = append(cmd.Env, "HOME="+os.TempDir(), "USER=postgres", "LOGNAME=postgres")
	}
	return cmd
}

// reachableDir returns where the server's files go when it runs as the
// unprivileged user: dir itself when that user can reach it, or else (a
// clone under /root, say) a directory of its own under /var/tmp that dir
// becomes a symbolic link to, so that the data still sits "under" the data
// dir for the user and survives reboots.
func reachableDir(ctx context.Context, cred *syscall.Credential, dir string, logf func(string, ...any)) (string, error) {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	reachable := func(d string) bool {
		probe := &Postgres{cred: cred}
		return probe.command(ctx, "/bin/sh", "-c", `test -w "$1" && test -x "$1"`, "sh", d).Run() == nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	if reachable(dir) {
		return dir, nil
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) > 0 {
		return "", fmt.Errorf("postgres: the data directory %s is not reachable by the unprivileged user \"postgres\" that PostgreSQL must run as (a parent directory such as /root is closed to it): choose --data-dir under a world-traversable path such as /tmp or /var/lib, or set HOOKSTREAM_DATABASE_URL", dir)
	}
	sum := sha256.Sum256([]byte(dir))
	elsewhere := "/var/tmp" // kept across reboots, unlike /tmp
	if _, err := os.Stat(elsewhere); err != nil {
		elsewhere = os.TempDir()
	}
	elsewhere = filepath.Join(elsewhere, "hookstream-postgres-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(elsewhere, 0o700); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	if err := os.Chown(elsewhere, int(cred.Uid), int(cred.Gid)); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	if err := os.Remove(dir); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	if err := os.Symlink(elsewhere, dir); err != nil {
		return "", fmt.Errorf("postgres: %w", err)
	}
	logf("the postgres user cannot reach %s; PostgreSQL's files live in %s (linked from there)", dir, elsewhere)
	return elsewhere, nil
}

// serverCredential is nil when this process may run PostgreSQL itself, and
// the "postgres" user's when it is root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("postgres: running as root, and PostgreSQL refuses to run as root, but there is no unprivileged user %q to run it as: create it (useradd --system postgres) or set HOOKSTREAM_DATABASE_URL", "postgres")
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// findBinaries returns the directory holding initdb and pg_ctl: PATH first,
// then the newest /usr/lib/postgresql/<version>/bin.
func findBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) { return freePort() }

package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PostgresConfig configures a private PostgreSQL server.
type PostgresConfig struct {
	// DataDir holds everything of the server: the cluster (data/), the
	// Unix socket (run/), the log (postgres.log) and the lock file.
	// Required. When this process is root the server runs as the user
	// "postgres", and DataDir is handed to that user; if that user cannot
	// reach a new, empty DataDir (a clone under /root), the files go to a
	// new directory under /var/tmp instead and DataDir becomes a symbolic
	// link to it.
	DataDir string
	// Port on 127.0.0.1. Default 0: a free port, picked anew by every
	// StartPostgres (Start after Stop keeps it).
	Port int
	// NoSync trades crash safety for speed (initdb --no-sync, fsync=off,
	// full_page_writes=off): committed data survives Stop and a crash of
	// the server (Crash), whose WAL is in the operating system's cache,
	// but maybe not a crash of the machine. Commits still wait for their
	// WAL write (synchronous_commit stays on: off would lose the last
	// commits to a crash of the server). For tests. Default false.
	NoSync bool
	// Ephemeral makes the server and its files throwaway: Close removes
	// them, and a watchdog process stops the server and removes them when
	// this process exits without Close, even when it is killed (a test
	// binary that panics or times out). The watchdog runs as the server
	// user, so DataDir itself goes only if its parent lets that user
	// remove it (the sticky /tmp does, for the user's own directory).
	// Default false.
	Ephemeral bool
	// Settings are server settings ("name=value", as postgres -c takes
	// them) for this start, after the ones StartPostgres sets: the scale
	// benchmark sizes its server's memory and WAL like a production one.
	Settings []string
	// Logf reports what is done (initdb, a relocated data directory, an
	// orphaned server restarted); nil discards it.
	Logf func(format string, args ...any)
}

// Postgres is a private PostgreSQL server. While it runs, this value owns
// its data directory (a lock file in it), so no other process starts or
// stops a server there.
type Postgres struct {
	cfg     PostgresConfig
	link    string // absolute DataDir as given, maybe a link to dir
	dir     string // where the files are
	bin     string // directory of initdb, pg_ctl and postgres
	cred    *syscall.Credential
	pgdata  string
	sockDir string // "" when the path would be too long for a socket
	logFile string
	port    int
	// password of the superuser, kept in passwordFile (mode 0600); every
	// connection needs it (see secure).
	password     string
	passwordFile string

	mu       sync.Mutex // serialises Start, Stop and Close
	lock     *dirLock   // held from start to stop
	watchdog *watchdog
	closed   bool
}

// ErrNoBinaries means the PostgreSQL server binaries are not on this machine.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in /usr/lib/postgresql/*/bin or /usr/pgsql-*/bin: install them (Debian/Ubuntu: apt-get install postgresql; Fedora/RHEL: dnf install postgresql-server; macOS: brew install postgresql) or set HOOKSTREAM_DATABASE_URL to an existing server")

// serverUser is the unprivileged account the server runs as when this
// process is root; Debian's and the PGDG packages create it.
const serverUser = "postgres"

// StartPostgres creates the cluster in DataDir on first use (initdb) and
// starts the server. A server still running in DataDir because the process
// that started it died (kill -9, a crash) is stopped and started again with
// this config; a server that a live process owns is left alone, with an
// error wrapping ErrDataDirInUse.
func StartPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	p, err := newPostgres(cfg)
	if err != nil {
		return nil, err
	}
	if p.lock, err = lockDir(p.dir); err != nil {
		return nil, fmt.Errorf("postgres: %w (another `hookstream dev`? give each its own --data-dir)", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = p.release(context.WithoutCancel(ctx))
		}
	}()
	if err := p.prepare(ctx); err != nil {
		return nil, err
	}
	if err := p.startOnAPort(ctx); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// newPostgres checks cfg and finds where the server's files go (following
// a link the data directory is), creating nothing but the socket
// directory.
func newPostgres(cfg PostgresConfig) (*Postgres, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("postgres: DataDir is required")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("postgres: port %d out of range", cfg.Port)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	link, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("postgres: data directory: %w", err)
	}
	if err := shellSafe(link); err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := resolveDir(link, cred, cfg.Logf)
	if err != nil {
		return nil, err
	}
	if err := shellSafe(dir); err != nil { // where a link led
		return nil, err
	}
	p := &Postgres{
		cfg:     cfg,
		link:    link,
		dir:     dir,
		cred:    cred,
		pgdata:  filepath.Join(dir, "data"),
		logFile: filepath.Join(dir, "postgres.log"),
		port:    cfg.Port,
	}
	// A Unix socket path is limited to 107 bytes; beyond that the server
	// listens on TCP only, which is all hookstream uses.
	if run := filepath.Join(dir, "run"); len(run)+len("/.s.PGSQL.65535.lock") <= 107 {
		p.sockDir = run
		if err := os.Mkdir(run, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("postgres: socket directory: %w", err)
		}
	}
	return p, nil
}

// prepare makes the locked directory a server ready to start: its files
// the server user's, the binaries of its version found, the watchdog of
// an ephemeral one started, the cluster created or its password kept, an
// orphaned server stopped.
func (p *Postgres) prepare(ctx context.Context) error {
	// chown -R: every file must be the server user's, including what root
	// created here (the lock file, the socket directory, files of an
	// earlier run as another user), and the watchdog must be able to
	// remove them all.
	if err := p.chownTree(); err != nil {
		return err
	}
	var err error
	if p.bin, err = findBinaries(pgVersion(p.pgdata), os.Getenv("PATH"), binGlobs); err != nil {
		return err
	}
	if p.cfg.Ephemeral {
		if p.watchdog, err = startWatchdog(p); err != nil {
			return err
		}
	}
	newPassword, err := p.loadPassword()
	if err != nil {
		return err
	}
	created, err := p.initdb(ctx)
	if err != nil {
		return err
	}
	if created { // initdb set the password and wrote pg_hba.conf
		newPassword = false
	}
	running, err := p.running(ctx)
	if err != nil {
		return err
	}
	if running {
		// We hold the lock, so whoever started it is gone: an orphan of a
		// killed `hookstream dev` or test binary. It may run with other
		// settings (its port); restart it rather than guess.
		p.cfg.Logf("stopping a PostgreSQL server left running in %s by a process that exited", p.pgdata)
		if err := p.stop(ctx); err != nil {
			return err
		}
	}
	return p.secure(ctx, newPassword)
}

// startOnAPort starts the server on the configured port, or on a free one
// (a free port was only free a moment ago; when another process took it
// meanwhile, it picks another, three times at most).
func (p *Postgres) startOnAPort(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		if p.cfg.Port == 0 {
			var err error
			if p.port, err = freePort(); err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
		}
		err := p.start(ctx)
		if err == nil || p.cfg.Port != 0 || attempt == 3 || !errors.Is(err, errPortInUse) {
			return err
		}
	}
}

// URL is a connection URL for the superuser and the postgres database,
// with the password: redact it before showing it (internal/redact).
func (p *Postgres) URL() string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", p.password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)), Path: "/postgres", RawQuery: "sslmode=disable"}
	return u.String()
}

// PasswordFile is the file that holds the superuser's password (mode 0600).
func (p *Postgres) PasswordFile() string { return p.passwordFile }

// Port is the server's TCP port on 127.0.0.1.
func (p *Postgres) Port() int { return p.port }

// Dir is the absolute directory holding the server's files: DataDir, or
// where DataDir links to.
func (p *Postgres) Dir() string { return p.dir }

// Start starts the server again after Stop, on the same port and data. It
// is a no-op when it runs.
func (p *Postgres) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("postgres: Start after Close")
	}
	if p.lock == nil {
		l, err := lockDir(p.dir)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		p.lock = l
	}
	running, err := p.running(ctx)
	if err != nil || running {
		return err
	}
	return p.start(ctx)
}

// Stop stops the server with a fast shutdown (sessions are ended,
// committed data is safe) and gives up the data directory, so another
// StartPostgres, in this process or another, may use it. Start starts it
// again. It is a no-op when the server is not running.
func (p *Postgres) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.lock == nil {
		return nil
	}
	running, err := p.running(ctx)
	if err == nil && running {
		err = p.stop(ctx)
	}
	if err != nil {
		return err // still ours: the server may still run
	}
	p.lock.unlock()
	p.lock = nil
	return nil
}

// Crash stops the server with an immediate shutdown, as a crash would end
// it: sessions are cut off, no checkpoint is written, and the next Start
// recovers from the WAL. Unlike Stop it keeps the data directory, which
// only Start may use next. It is a no-op when the server is not running.
func (p *Postgres) Crash(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.lock == nil {
		return nil
	}
	running, err := p.running(ctx)
	if err != nil || !running {
		return err
	}
	return p.stopMode(ctx, "immediate")
}

// Close stops the server and, with Ephemeral, removes its files. Calling it
// again is a no-op; Start after Close fails.
func (p *Postgres) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var err error
	if p.lock != nil {
		if running, rerr := p.running(ctx); rerr != nil {
			err = rerr
		} else if running {
			err = p.stop(ctx)
		}
	}
	return errors.Join(err, p.release(ctx))
}

// release ends the watchdog, which for Ephemeral stops the server if it
// still runs and removes the files, and unlocks the data directory.
func (p *Postgres) release(ctx context.Context) error {
	var err error
	if p.watchdog != nil {
		err = p.watchdog.finish(ctx)
		p.watchdog = nil
		// The watchdog runs as the server user, who may not remove the
		// directory itself from a parent it does not own; nor the link.
		for _, d := range []string{p.dir, p.link} {
			if rerr := os.RemoveAll(d); rerr != nil {
				err = errors.Join(err, fmt.Errorf("postgres: remove %s: %w", d, rerr))
			}
		}
	}
	p.lock.unlock()
	p.lock = nil
	return err
}

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("port in use")

// start runs pg_ctl start and waits until the server accepts connections.
func (p *Postgres) start(ctx context.Context) error {
	// pg_ctl runs the server through /bin/sh with these options pasted in,
	// so values are shell-quoted; inside, the directory is double-quoted
	// for PostgreSQL's list syntax, which would split it at a space.
	// Without a directory of our own the Unix socket is off rather than in
	// the default directory, which may not exist or be writable here.
	socket := "''"
	if p.sockDir != "" {
		socket = shellQuote(`"` + p.sockDir + `"`)
	}
	opts := []string{
		"-c listen_addresses=127.0.0.1",
		"-c port=" + strconv.Itoa(p.port),
		"-c unix_socket_directories=" + socket,
		// hookstream's pools plus parallel tests; the default 100 is tight.
		"-c max_connections=200",
	}
	if p.cfg.NoSync {
		opts = append(opts, "-c fsync=off", "-c full_page_writes=off")
	}
	for _, kv := range p.cfg.Settings {
		opts = append(opts, "-c "+shellQuote(kv))
	}
	// Only the part of the log written by this start explains its failure.
	logStart := int64(0)
	if st, err := os.Stat(p.logFile); err == nil {
		logStart = st.Size()
	}
	if err := p.removeStalePidFiles(); err != nil {
		return err
	}
	// After a kill -9 of the postmaster, its backends notice and exit on
	// their own within moments; until then the server refuses to start
	// (shared memory "still in use"). Retry that case for a bounded time.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := p.command(ctx, filepath.Join(p.bin, "pg_ctl"), "start", "-w", "-t", "60",
			"-D", p.pgdata, "-l", p.logFile, "-o", strings.Join(opts, " ")).CombinedOutput()
		if err == nil {
			return nil
		}
		tail := p.logSince(logStart)
		err = fmt.Errorf("postgres: pg_ctl start on 127.0.0.1:%d: %w\n%s\nserver log %s:\n%s", p.port, err, bytes.TrimSpace(out), p.logFile, tail)
		switch {
		case strings.Contains(tail, "Address already in use"):
			return fmt.Errorf("%w: %w", errPortInUse, err)
		case strings.Contains(tail, "is still in use") && time.Now().Before(deadline):
			if werr := waitTick(ctx, 200*time.Millisecond); werr != nil {
				return errors.Join(err, werr)
			}
			logStart = p.logSize()
		default:
			return err
		}
	}
}

// removeStalePidFiles removes the pid files of a killed postmaster.
func (p *Postgres) removeStalePidFiles() error {
	if !p.deadPostmaster() {
		return nil
	}
	// Only we (holding the lock) start servers here, and the process
	// the pid file names has exited: the file is stale, whatever
	// kill(pid, 0) says. The same goes for the socket's lock file.
	p.cfg.Logf("removing the pid files of a PostgreSQL server that was killed")
	stale := []string{filepath.Join(p.pgdata, "postmaster.pid")}
	if p.sockDir != "" {
		sockets, _ := filepath.Glob(filepath.Join(p.sockDir, ".s.PGSQL.*"))
		stale = append(stale, sockets...)
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("postgres: remove stale pid file: %w", err)
		}
	}
	return nil
}

// stop runs pg_ctl stop -m fast and waits until the server is gone.
func (p *Postgres) stop(ctx context.Context) error { return p.stopMode(ctx, "fast") }

// stopMode runs pg_ctl stop with a shutdown mode and waits until the
// server is gone.
func (p *Postgres) stopMode(ctx context.Context, mode string) error {
	out, err := p.command(ctx, filepath.Join(p.bin, "pg_ctl"), "stop", "-w", "-t", "60", "-m", mode, "-D", p.pgdata).CombinedOutput()
	if err != nil {
		return fmt.Errorf("postgres: pg_ctl stop: %w\n%s", err, bytes.TrimSpace(out))
	}
	return nil
}

// running asks pg_ctl whether a server runs in the data directory. pg_ctl
// checks that the postmaster.pid process is alive, so a pid file left by a
// crash counts as not running.
func (p *Postgres) running(ctx context.Context) (bool, error) {
	out, err := p.command(ctx, filepath.Join(p.bin, "pg_ctl"), "status", "-D", p.pgdata).CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return !p.deadPostmaster(), nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 3: // not running
		return false, nil
	default:
		return false, fmt.Errorf("postgres: pg_ctl status: %w\n%s", err, bytes.TrimSpace(out))
	}
}

// deadPostmaster reports whether postmaster.pid names a process that has
// exited but is not reaped yet: a zombie. The postmaster's parent is init
// (pg_ctl exits after starting it), and an init that reaps late, as in
// some containers and sandboxes, or a hookstream running as PID 1, leaves
// a killed postmaster a zombie for a while or for good. pg_ctl and the
// server see the pid alive (kill(pid, 0) succeeds on a zombie) and would
// report a server that does not exist and refuse to start a new one.
// Linux only (/proc); elsewhere it is always false.
func (p *Postgres) deadPostmaster() bool {
	b, err := os.ReadFile(filepath.Join(p.pgdata, "postmaster.pid"))
	if err != nil {
		return false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || pid <= 0 {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return false
	}
	fields := bytes.Fields(stat[i+1:])
	return len(fields) > 0 && (string(fields[0]) == "Z" || string(fields[0]) == "X")
}

// initdb creates the cluster when there is none, with the superuser's
// password and our pg_hba.conf, and reports whether it did. It works in a
// scratch directory renamed into place at the end, so an initdb
// interrupted by a crash leaves nothing that looks like a cluster.
func (p *Postgres) initdb(ctx context.Context) (bool, error) {
	if pgVersion(p.pgdata) != "" {
		return false, nil
	}
	if _, err := os.Stat(p.pgdata); err == nil {
		return false, fmt.Errorf("postgres: %s exists but holds no PostgreSQL cluster (no PG_VERSION): remove it to start afresh", p.pgdata)
	}
	scratch := p.pgdata + ".initdb"
	if err := os.RemoveAll(scratch); err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	p.cfg.Logf("initdb %s", p.pgdata)
	args := []string{"-D", scratch, "-U", "postgres", "-A", "scram-sha-256", "--pwfile", p.passwordFile, "-E", "UTF8", "--locale=C"}
	if p.cfg.NoSync {
		args = append(args, "--no-sync")
	}
	if out, err := p.command(ctx, filepath.Join(p.bin, "initdb"), args...).CombinedOutput(); err != nil {
		return false, fmt.Errorf("postgres: initdb: %w\n%s", err, bytes.TrimSpace(out))
	}
	// initdb set the password from the file: the cluster needs only our
	// pg_hba.conf to be secure.
	if err := p.writeHBA(filepath.Join(scratch, "pg_hba.conf")); err != nil {
		return false, err
	}
	if err := os.Rename(scratch, p.pgdata); err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	return true, nil
}

// passwordFileName is the file in the server's directory holding the
// superuser's password.
const passwordFileName = "password"

// loadPassword reads the superuser's password from its file, or makes one
// and writes the file (mode 0600, the server user's: initdb reads it). It
// reports whether the password is new, which an existing cluster does not
// know yet.
func (p *Postgres) loadPassword() (created bool, err error) {
	p.passwordFile = filepath.Join(p.dir, passwordFileName)
	b, err := os.ReadFile(p.passwordFile)
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		p.password = string(bytes.TrimSpace(b))
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("postgres: password file: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return false, fmt.Errorf("postgres: password: %w", err)
	}
	p.password = hex.EncodeToString(raw)
	if err := os.WriteFile(p.passwordFile, []byte(p.password+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("postgres: password file: %w", err)
	}
	if err := os.Chmod(p.passwordFile, 0o600); err != nil { // an empty file of another mode was there
		return false, fmt.Errorf("postgres: password file: %w", err)
	}
	if p.cred != nil {
		if err := os.Lchown(p.passwordFile, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return false, fmt.Errorf("postgres: hand the password file to user %s: %w", serverUser, err)
		}
	}
	return true, nil
}

// hba is the whole of pg_hba.conf: every connection, over TCP or the
// socket, by any user of the machine, needs the superuser's password.
// Loopback alone is no boundary on a machine that others share: the
// server used to trust every local connection, and so every local user.
const hba = `# Written by hookstream (internal/devstack); rewritten at every start.
# Every connection needs the password in the server directory's file
# "password" (mode 0600).
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
`

func (p *Postgres) writeHBA(path string) error {
	if err := os.WriteFile(path, []byte(hba), 0o600); err != nil {
		return fmt.Errorf("postgres: pg_hba.conf: %w", err)
	}
	if p.cred != nil {
		if err := os.Lchown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return fmt.Errorf("postgres: pg_hba.conf: %w", err)
		}
	}
	return nil
}

// secure makes a stopped cluster require the password: it sets the
// password (in single-user mode, so that no connection is ever accepted
// without it) when the password is new or pg_hba.conf is not ours — a
// cluster an older version made to trust local connections, or one whose
// password file was removed — and then writes pg_hba.conf. The file goes
// last: a crash in between leaves it as it was, and the next start sets
// the password again.
func (p *Postgres) secure(ctx context.Context, newPassword bool) error {
	hbaPath := filepath.Join(p.pgdata, "pg_hba.conf")
	current, err := os.ReadFile(hbaPath)
	if err != nil {
		return fmt.Errorf("postgres: pg_hba.conf: %w", err)
	}
	if !newPassword && string(current) == hba {
		return nil
	}
	p.cfg.Logf("setting the password of the PostgreSQL server in %s (kept in %s)", p.pgdata, p.passwordFile)
	if err := p.removeStalePidFiles(); err != nil {
		return err
	}
	cmd := p.command(ctx, filepath.Join(p.bin, "postgres"), "--single", "-D", p.pgdata, "postgres")
	// On stdin, not in the arguments, which other users can read (ps).
	cmd.Stdin = strings.NewReader("ALTER ROLE postgres PASSWORD '" + p.password + "'\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("postgres: set the password: %w\n%s", err, bytes.TrimSpace(out))
	} else if bytes.Contains(out, []byte("ERROR")) {
		return fmt.Errorf("postgres: set the password:\n%s", bytes.TrimSpace(out))
	}
	return p.writeHBA(hbaPath)
}

// resolveDir creates DataDir and returns the directory the server's files
// go in. That is DataDir itself (or what it links to), except when this
// process is root and the server user cannot reach DataDir, say a clone
// under /root with mode 0700: then a new, empty DataDir is replaced by a
// symbolic link to a new directory under /var/tmp (kept across reboots,
// unlike /tmp), so that `hookstream dev` works from anywhere and its data
// still sits "in" DataDir. A DataDir that already holds files is not moved
// behind the user's back; that is an error saying what to do.
func resolveDir(dataDir string, cred *syscall.Credential, logf func(string, ...any)) (string, error) {
	dir := dataDir
	if real, err := filepath.EvalSymlinks(dataDir); err == nil {
		dir = real
	}
	// Parents 0755: created by root with 0700 they would shut the server
	// user out of its own directory.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("postgres: data directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("postgres: data directory: %w", err)
	}
	if cred == nil {
		return dir, nil
	}
	if err := os.Lchown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return "", fmt.Errorf("postgres: hand %s to user %s: %w", dir, serverUser, err)
	}
	if reachable(dir, cred) {
		return dir, nil
	}
	blocker := closedAncestor(dir, cred)
	if blocker == "" {
		blocker = dir
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
		mode := ""
		if st, err := os.Stat(blocker); err == nil {
			mode = fmt.Sprintf(" (mode %04o, owner uid %d)", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid)
		}
		return "", fmt.Errorf("postgres: PostgreSQL refuses to run as root, so it runs as the user %q, and that user cannot reach the data directory %s, which already holds files: %s%s is closed to it. "+
			"Fix one of: choose a data directory elsewhere (hookstream dev --data-dir /var/tmp/hookstream); "+
			"let the user pass through (chmod o+x %s); or set HOOKSTREAM_DATABASE_URL to an existing server",
			serverUser, dir, blocker, mode, blocker)
	}
	base := "/var/tmp"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = os.TempDir()
	}
	// A new name each time, not one derived from DataDir: after someone
	// deletes DataDir to start afresh, an old cluster must not come back
	// (its stored consumer offsets would not match a fresh broker).
	elsewhere, err := os.MkdirTemp(base, "hookstream-postgres-")
	if err != nil {
		return "", fmt.Errorf("postgres: relocate data directory: %w", err)
	}
	if err := os.Lchown(elsewhere, int(cred.Uid), int(cred.Gid)); err != nil {
		_ = os.Remove(elsewhere)
		return "", fmt.Errorf("postgres: relocate data directory: %w", err)
	}
	if !reachable(elsewhere, cred) {
		_ = os.Remove(elsewhere)
		return "", fmt.Errorf("postgres: user %q can reach neither the data directory %s (%s is closed to it) nor %s: choose a data directory elsewhere or set HOOKSTREAM_DATABASE_URL", serverUser, dir, blocker, elsewhere)
	}
	if err := os.Remove(dir); err != nil {
		_ = os.Remove(elsewhere)
		return "", fmt.Errorf("postgres: relocate data directory: %w", err)
	}
	if err := os.Symlink(elsewhere, dir); err != nil {
		_ = os.Remove(elsewhere)
		return "", fmt.Errorf("postgres: relocate data directory: %w", err)
	}
	logf("user %s cannot reach %s (%s is closed to it): PostgreSQL's files are in %s, and %s links there", serverUser, dir, blocker, elsewhere, dir)
	return elsewhere, nil
}

// reachable asks the kernel, as the server user, whether it can use dir,
// rather than reading mode bits: ACLs and group membership then count as
// they will for the server.
func reachable(dir string, cred *syscall.Credential) bool {
	probe := serverCommand(context.Background(), cred, "/bin/sh", "-c", `test -d "$1" && test -w "$1" && test -x "$1"`, "sh", dir)
	return probe.Run() == nil
}

// chownTree hands every file under DataDir to the server user (chown -R),
// for directories that root touched or that an earlier run as another
// user created.
func (p *Postgres) chownTree() error {
	if p.cred == nil {
		return nil
	}
	uid, gid := int(p.cred.Uid), int(p.cred.Gid)
	err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("postgres: hand %s to user %s: %w", p.dir, serverUser, err)
	}
	return nil
}

// closedAncestor returns the first directory on the way to dir that the
// credential's user may not pass through, by mode bits; "" if none.
func closedAncestor(dir string, cred *syscall.Credential) string {
	var path []string
	for d := dir; ; d = filepath.Dir(d) {
		path = append(path, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	slices.Reverse(path)
	for _, d := range path {
		info, err := os.Stat(d)
		if err != nil {
			return d
		}
		st := info.Sys().(*syscall.Stat_t)
		perm := info.Mode().Perm()
		var x fs.FileMode
		switch {
		case st.Uid == cred.Uid:
			x = 0o100
		case st.Gid == cred.Gid || slices.Contains(cred.Groups, st.Gid):
			x = 0o010
		default:
			x = 0o001
		}
		if perm&x == 0 {
			return d
		}
	}
	return ""
}

func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return serverCommand(ctx, p.cred, name, args...)
}

// serverCommand prepares a command run as the server user (cred; nil is
// this process's user), in its own process group: a terminal's Ctrl-C then
// reaches hookstream, which stops the server in order, and not the server
// directly.
func serverCommand(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Dir = "/" // the server user may not be able to enter our working directory
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if cred != nil {
		cmd.Env = append(cmd.Env, "HOME="+os.TempDir(), "USER="+serverUser, "LOGNAME="+serverUser)
	}
	return cmd
}

// logSince returns the server log written after offset, at most its last 4 KiB.
func (p *Postgres) logSince(offset int64) string {
	f, err := os.Open(p.logFile)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.Size()-offset > 4096 {
		offset = st.Size() - 4096
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(bytes.TrimSpace(b))
}

func (p *Postgres) logSize() int64 {
	st, err := os.Stat(p.logFile)
	if err != nil {
		return 0
	}
	return st.Size()
}

// serverCredential is nil when this process may run PostgreSQL itself, and
// the server user's when it is root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return nil, fmt.Errorf("postgres: this process is root and PostgreSQL refuses to run as root, but there is no user %q to run it as: create it (useradd --system --user-group %s), run as another user, or set HOOKSTREAM_DATABASE_URL", serverUser, serverUser)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres: user %s: uid %q: %w", serverUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres: user %s: gid %q: %w", serverUser, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	// Without Groups the child keeps no supplementary groups at all (Go
	// clears root's); give it the user's own, as a login would.
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, nil
}

// binGlobs are where distributions install the server binaries, one
// directory per major version (Debian/Ubuntu, then PGDG RPMs).
var binGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

// findBinaries returns the directory holding initdb, pg_ctl and postgres:
// PATH first, then the newest versioned install directory. For an existing
// cluster (want = its PG_VERSION) only binaries of that major version
// will do, since a server cannot open another major version's files.
func findBinaries(want, pathEnv string, globs []string) (string, error) {
	complete := func(dir string) bool {
		for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, tool)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	var candidates []string
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			continue
		}
		// Resolve symlinks (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin)
		// so pg_ctl finds its postgres and so the version can be read.
		if real, err := filepath.EvalSymlinks(filepath.Join(d, "pg_ctl")); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
	}
	var versioned []string
	for _, g := range globs {
		m, _ := filepath.Glob(g)
		versioned = append(versioned, m...)
	}
	slices.SortStableFunc(versioned, func(a, b string) int { return versionOf(b) - versionOf(a) })
	candidates = append(candidates, versioned...)
	var found []string
	for _, d := range candidates {
		if !complete(d) {
			continue
		}
		if want == "" {
			return d, nil
		}
		v := binVersion(d)
		if v == want {
			return d, nil
		}
		found = append(found, fmt.Sprintf("%s (%s)", d, v))
	}
	if want != "" && len(found) > 0 {
		return "", fmt.Errorf("postgres: the data directory holds a PostgreSQL %s cluster, but the server binaries found are another major version: %s. Install PostgreSQL %s (Debian/Ubuntu: apt-get install postgresql-%s), or start afresh with another data directory", want, strings.Join(found, ", "), want, want)
	}
	return "", ErrNoBinaries
}

// versionOf reads the major version from an install directory such as
// /usr/lib/postgresql/15/bin or /usr/pgsql-15/bin; 0 when there is none.
func versionOf(binDir string) int {
	s := filepath.Base(filepath.Dir(binDir))
	s = strings.TrimPrefix(s, "pgsql-")
	major, _, _ := strings.Cut(s, ".")
	v, _ := strconv.Atoi(major)
	return v
}

// binVersion is the major version of the binaries in dir, from the
// directory name or else from `pg_ctl --version`.
func binVersion(dir string) string {
	if v := versionOf(dir); v > 0 {
		return strconv.Itoa(v)
	}
	out, err := exec.Command(filepath.Join(dir, "pg_ctl"), "--version").Output()
	if err != nil {
		return "unknown"
	}
	// "pg_ctl (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)"
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return "unknown"
	}
	major, _, _ := strings.Cut(fields[2], ".")
	return major
}

// pgVersion is the major version of the cluster in pgdata, "" if none.
func pgVersion(pgdata string) string {
	b, err := os.ReadFile(filepath.Join(pgdata, "PG_VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// shellSafe refuses a data directory path that pg_ctl cannot carry: it
// pastes the path between double quotes into a shell command line.
func shellSafe(dir string) error {
	if strings.ContainsAny(dir, "\"$`\\\n") {
		return fmt.Errorf("postgres: data directory %q: the characters \" $ ` \\ and newline are not supported in its path", dir)
	}
	return nil
}

// shellQuote quotes s for the shell that pg_ctl runs the server with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// waitTick waits d or until ctx ends, for retry loops that have a deadline.
func waitTick(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before it is used; callers that bind it
// retry or accept that.
func FreePort() (int, error) { return freePort() }

// PrivateDir makes dir — a data directory that holds, among others, the
// directory of a private PostgreSQL server — private to this user: mode
// 0700, created if missing (its parents 0755), tightened if it exists.
// When forPostgres and this process is root, the server runs as the user
// "postgres", who must pass through dir to reach its own directory inside
// it: dir's group is then that user's group and its mode 0710, so that the
// server user may enter it but neither list it nor read anything else in
// it. Without that user, dir stays 0700 (StartPostgres then says what is
// missing).
func PrivateDir(dir string, forPostgres bool) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	mode := fs.FileMode(0o700)
	if forPostgres {
		if cred, err := serverCredential(); err == nil && cred != nil {
			if err := os.Chown(dir, -1, int(cred.Gid)); err != nil {
				return fmt.Errorf("let user %s pass through %s: %w", serverUser, dir, err)
			}
			mode = 0o710
		}
	}
	return os.Chmod(dir, mode)
}

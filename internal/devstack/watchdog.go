package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// watchdog cleans up an Ephemeral server when this process is gone. It is
// a shell process reading a pipe whose only writer is this process: the
// kernel closes our end however we exit (return, panic, test timeout,
// kill -9), the read ends, and the shell stops the server and removes the
// data directory. A deferred function or TestMain would not run in most of
// those cases, and a server left running would keep its port and memory
// until someone noticed.
type watchdog struct {
	cmd *exec.Cmd
	w   *os.File // closing it releases the watchdog
}

const watchdogScript = `cat >/dev/null; "$1" stop -D "$2" -m immediate -w -t 60 >/dev/null 2>&1; rm -rf "$3"`

func startWatchdog(p *Postgres) (*watchdog, error) {
	r, w, err := os.Pipe() // O_CLOEXEC: no other child inherits our end
	if err != nil {
		return nil, fmt.Errorf("postgres: watchdog: %w", err)
	}
	// Not tied to a context: it must outlive every request, and this
	// process. p.command puts it in its own process group, so a Ctrl-C
	// meant for the test binary does not stop it before it has cleaned up.
	cmd := p.command(context.Background(), "/bin/sh", "-c", watchdogScript,
		"hookstream-postgres-watchdog", filepath.Join(p.bin, "pg_ctl"), p.pgdata, p.dir)
	cmd.Stdin = r
	err = cmd.Start()
	_ = r.Close()
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("postgres: watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, w: w}, nil
}

// finish releases the watchdog, so that it stops the server (if running)
// and removes the data directory, and waits for it to be done.
func (wd *watchdog) finish(ctx context.Context) error {
	_ = wd.w.Close()
	// Waiting only here, not in a goroutine started with the watchdog,
	// keeps a long-lived goroutine out of callers' leak checks.
	done := make(chan error, 1)
	go func() { done <- wd.cmd.Wait() }()
	timer := time.NewTimer(90 * time.Second) // pg_ctl stop's own -t 60, and then some
	defer timer.Stop()
	select {
	case err := <-done:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return nil // rm's or pg_ctl's complaints; what is left is removed by the caller
		}
		return err
	case <-ctx.Done():
	case <-timer.C:
	}
	_ = syscall.Kill(-wd.cmd.Process.Pid, syscall.SIGKILL)
	return errors.Join(errors.New("postgres: watchdog did not finish in time"), <-done)
}

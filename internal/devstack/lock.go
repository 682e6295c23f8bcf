package devstack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockFileName is the lock file kept at the top of a data directory. kfake
// and PostgreSQL ignore files they do not know there.
const lockFileName = "hookstream.lock"

// ErrDataDirInUse means another live process (or another value in this
// one) owns the data directory.
var ErrDataDirInUse = errors.New("data directory is in use by another process")

// dirLock is an exclusive flock on a data directory's lock file. flock and
// not a pid file: the kernel drops the lock when the owner exits however it
// exits, so a crash never leaves a stale lock behind, and the lock is per
// open file, so two owners inside one process conflict too.
type dirLock struct {
	f *os.File
}

// lockDir takes the lock of dir without waiting.
func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFileName)
	// Go opens files with O_CLOEXEC, so servers and tools we start do not
	// inherit the descriptor and cannot keep the lock alive after we die.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	// The owner may be this process, a moment after it let the directory
	// go: a child another goroutine was forking then holds a copy of the
	// descriptor until it execs (O_CLOEXEC acts only at exec), and with it
	// the flock. Wait that out, briefly; a real second owner in this
	// process still conflicts.
	for deadline := time.Now().Add(2 * time.Second); errors.Is(err, syscall.EWOULDBLOCK) && time.Now().Before(deadline); {
		owner, _ := os.ReadFile(path)
		if strings.TrimSpace(string(owner)) != strconv.Itoa(os.Getpid()) {
			break
		}
		time.Sleep(10 * time.Millisecond)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		owner, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid := strings.TrimSpace(string(owner)); pid != "" {
				return nil, fmt.Errorf("%s: %w (pid %s)", dir, ErrDataDirInUse, pid)
			}
			return nil, fmt.Errorf("%s: %w", dir, ErrDataDirInUse)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is for people looking at the directory; the flock decides.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// unlock releases the lock; a nil lock is a no-op.
func (l *dirLock) unlock() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
}

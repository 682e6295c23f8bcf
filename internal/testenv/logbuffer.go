package testenv

import (
	"bytes"
	"sync"
)

// LogBuffer is a log sink that the code under test writes from its
// goroutines while the test reads it (a bytes.Buffer is not safe for
// that). Its zero value is ready to use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is what was written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

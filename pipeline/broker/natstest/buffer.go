package natstest

import (
	"bytes"
	"sync"
)

// Buffer collects what processes and handlers write while the test reads
// it: a server's or a Collector's output, a logger's lines. Give it as
// both Stdout and Stderr of a command, so exec copies both through one
// goroutine into it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

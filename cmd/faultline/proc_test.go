package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

// Helpers of the tests that run faultline, Collectors or servers as
// processes.

// faultlineBin is $FAULTLINE_BIN (make test sets it to bin/faultline), or
// else the command built afresh for this test.
func faultlineBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("FAULTLINE_BIN"); b != "" {
		return b
	}
	out := filepath.Join(t.TempDir(), "faultline")
	if b, err := exec.Command("go", "build", "-o", out, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// freePort is a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := chlocal.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// freeAddr is freePort as a listen address.
func freeAddr(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
}

// lockedBuf collects a process's output; give it as both Stdout and
// Stderr, so exec copies both through one goroutine into it.
type lockedBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

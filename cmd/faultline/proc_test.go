package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// otelcolBin is $FAULTLINE_OTELCOL_BIN, the stock Collector make test
// builds with the Collector builder.
func otelcolBin(t *testing.T) string {
	t.Helper()
	b := os.Getenv("FAULTLINE_OTELCOL_BIN")
	if b == "" {
		t.Fatal("FAULTLINE_OTELCOL_BIN is not set: run the tests with make test, which builds the Collector into bin/otelcol")
	}
	return b
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

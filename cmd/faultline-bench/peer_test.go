package main

import (
	"os"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

func TestStatFields(t *testing.T) {
	for _, tc := range []struct {
		stat        string
		ppid, utime string
		fields      int
	}{
		{"42 (faultline) S 7 42 42 0 -1 4194560 1 0 0 0 150 30 0 0 20 0 9 0 100", "7", "150", 20},
		// A command name may hold spaces and parentheses.
		{"43 (a) b (c) R 9 43 43 0 -1 4194560 1 0 0 0 5 6 0 0 20 0 1 0 100", "9", "5", 20},
	} {
		f := statFields([]byte(tc.stat))
		if len(f) != tc.fields || f[1] != tc.ppid || f[11] != tc.utime {
			t.Errorf("statFields(%q) = %q: want parent %s, utime %s", tc.stat, f, tc.ppid, tc.utime)
		}
	}
}

// TestCPUReadings: this process's CPU time, as procCPU reads it from
// /proc, agrees with getrusage's, and the machine's busy time grows by at
// least as much.
func TestCPUReadings(t *testing.T) {
	pid := os.Getpid()
	p0, m0, r0 := procCPU(pid), machineCPU(), otlptest.CPUTime()
	// A process younger than a clock tick may read 0 CPU.
	if p0 < 0 || m0 <= 0 {
		t.Fatalf("procCPU %v, machineCPU %v: want >= 0 and > 0", p0, m0)
	}
	// Burn 200 ms of CPU, however long a loaded machine takes to give it.
	x := 0
	for t0 := time.Now(); otlptest.CPUTime()-r0 < 200*time.Millisecond && time.Since(t0) < time.Minute; {
		x++
	}
	_ = x
	p1, m1, r1 := procCPU(pid), machineCPU(), otlptest.CPUTime()
	ru := float64((r1 - r0).Microseconds())
	if d := p1 - p0; d < ru-30_000 || d > ru+30_000 {
		t.Errorf("procCPU grew %.0f us, getrusage %.0f us", d, ru)
	}
	if d := m1 - m0; d < p1-p0-30_000 {
		t.Errorf("the machine's busy time grew %.0f us, less than this process's %.0f", d, p1-p0)
	}
	if procCPU(1<<30) != 0 {
		t.Error("procCPU of no process is not 0")
	}
}

// TestPairsOf: in A B B A order each faultline run is paired with the
// Collector run next to it.
func TestPairsOf(t *testing.T) {
	var runs []*peerRun
	for i, side := range []string{"collector", "faultline", "faultline", "collector", "collector", "faultline", "faultline", "collector"} {
		runs = append(runs, &peerRun{side: side, records: i})
	}
	pairs := pairsOf(runs)
	want := [][2]int{{1, 0}, {2, 3}, {5, 4}, {6, 7}}
	if len(pairs) != len(want) {
		t.Fatalf("%d pairs, want %d", len(pairs), len(want))
	}
	for i, p := range pairs {
		if p[0].records != want[i][0] || p[1].records != want[i][1] || p[0].side != "faultline" || p[1].side != "collector" {
			t.Errorf("pair %d: runs %d (%s), %d (%s); want %v", i, p[0].records, p[0].side, p[1].records, p[1].side, want[i])
		}
	}
}

package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// trap is a TCP listener that counts the connections made to it. Pointing
// faultline's NATS and ClickHouse addresses at traps shows whether a command
// connected; holding the ports faultline would listen on makes any attempt
// to listen fail.
type trap struct {
	ln    net.Listener
	conns atomic.Int32
}

func newTrap(t *testing.T) *trap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trap{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return tr
}

func (tr *trap) addr() string { return tr.ln.Addr().String() }

// quarantine points every address faultline connects to or listens on at
// traps, and its data directory at an empty one. It returns a function that
// fails the test if anything was connected to or created.
func quarantine(t *testing.T) (check func()) {
	t.Helper()
	nats, ch, busy := newTrap(t), newTrap(t), newTrap(t)
	data := t.TempDir()
	t.Setenv("FAULTLINE_DATA_DIR", data)
	t.Setenv("FAULTLINE_NATS_URL", "nats://"+nats.addr())
	t.Setenv("FAULTLINE_CLICKHOUSE_ADDR", ch.addr())
	for _, v := range []string{"FAULTLINE_ADMIN_LISTEN", "FAULTLINE_NATS_LISTEN", "FAULTLINE_GATEWAY_LISTEN", "FAULTLINE_GATEWAY_GRPC_LISTEN", "FAULTLINE_UI_LISTEN"} {
		t.Setenv(v, busy.addr())
	}
	return func() {
		t.Helper()
		time.Sleep(50 * time.Millisecond) // let a stray accept be counted
		for name, tr := range map[string]*trap{"NATS": nats, "ClickHouse": ch, "a listen address": busy} {
			if n := tr.conns.Load(); n > 0 {
				t.Errorf("%d connections to %s", n, name)
			}
		}
		if entries, _ := os.ReadDir(data); len(entries) > 0 {
			t.Errorf("the data directory was written: %v", entries)
		}
	}
}

// runQuick runs the command in process; a command that starts serving
// instead of returning fails the test rather than hanging it.
func runQuick(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(args, &out) }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(10 * time.Second):
		t.Fatalf("faultline %s did not return: it is serving", strings.Join(args, " "))
		return "", nil
	}
}

// TestHelp: every command takes -h and --help, prints its usage and
// returns nil (exit status 0), and starts, connects to, migrates and writes
// nothing.
func TestHelp(t *testing.T) {
	for _, c := range commands() {
		for _, h := range []string{"-h", "--help"} {
			t.Run(c.name+h, func(t *testing.T) {
				check := quarantine(t)
				out, err := runQuick(t, c.name, h)
				if err != nil {
					t.Fatalf("faultline %s %s: %v, want exit status 0", c.name, h, err)
				}
				if want := "usage: faultline " + c.name; !strings.HasPrefix(out, want) {
					t.Errorf("output does not start with %q:\n%s", want, out)
				}
				check()
			})
		}
	}
	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
			out, err := runQuick(t, args...)
			if err != nil || !strings.Contains(out, "commands:") || !strings.Contains(out, "check") {
				t.Errorf("faultline %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	t.Run("help dora", func(t *testing.T) {
		check := quarantine(t)
		out, err := runQuick(t, "help", "dora")
		if err != nil || !strings.HasPrefix(out, "usage: faultline dora") || !strings.Contains(out, "-since") {
			t.Errorf("faultline help dora: %v\n%s", err, out)
		}
		check()
	})
}

// TestHelpMistakes: a wrong flag or a stray argument is an error (exit
// status 1) that points at --help, and starts nothing either.
func TestHelpMistakes(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--verbose"},
		{"worker", "now"},
		{"migrate", "--dry-run"},
		{"dora", "--environment", "production"},
		{"config", "--json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			check := quarantine(t)
			_, err := runQuick(t, args...)
			if err == nil || !strings.Contains(err.Error(), "--help") {
				t.Fatalf("err %v, want one pointing at --help", err)
			}
			check()
		})
	}
}

// TestCheck: faultline check validates the named roles' settings without
// connecting to anything, and names the setting that is wrong.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string // over the quarantine's
		args  []string
		ok    bool
		wants string // in the output, or in the error
	}{
		{name: "all roles", args: []string{"run", "gateway", "worker", "correlator", "migrate"}, ok: true, wants: "correlator: settings valid"},
		{name: "gateway without NATS", env: map[string]string{"FAULTLINE_NATS_URL": ""}, args: []string{"gateway"}, wants: "FAULTLINE_NATS_URL"},
		{name: "run without NATS", env: map[string]string{"FAULTLINE_NATS_URL": "", "FAULTLINE_CLICKHOUSE_ADDR": ""}, args: []string{"run"}, ok: true, wants: "run: settings valid"},
		{name: "worker without ClickHouse", env: map[string]string{"FAULTLINE_CLICKHOUSE_ADDR": ""}, args: []string{"worker"}, wants: "FAULTLINE_CLICKHOUSE_ADDR"},
		{name: "gateway without ClickHouse", env: map[string]string{"FAULTLINE_CLICKHOUSE_ADDR": ""}, args: []string{"gateway"}, ok: true, wants: "gateway: settings valid"},
		{name: "migrate without ClickHouse", env: map[string]string{"FAULTLINE_CLICKHOUSE_ADDR": ""}, args: []string{"migrate"}, wants: "FAULTLINE_CLICKHOUSE_ADDR"},
		{name: "bad batch size", env: map[string]string{"FAULTLINE_WORKER_BATCH_RECORDS": "0"}, args: []string{"worker"}, wants: "FAULTLINE_WORKER_BATCH_RECORDS"},
		{name: "unparsable duration", env: map[string]string{"FAULTLINE_WORKER_ACK_WAIT": "soon"}, args: []string{"worker"}, wants: "WORKER_ACK_WAIT"},
		{name: "missing rules file", env: map[string]string{"FAULTLINE_CORRELATOR_RULES_FILE": "/nonexistent/rules.yaml"}, args: []string{"correlator"}, wants: "FAULTLINE_CORRELATOR_RULES_FILE"},
		{name: "unknown role", args: []string{"ui"}, wants: `unknown role "ui"`},
		{name: "no role", wants: "name at least one role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := quarantine(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, err := runQuick(t, append([]string{"check"}, tc.args...)...)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("err %v, want valid", err)
			case tc.ok && !strings.Contains(out, tc.wants):
				t.Fatalf("output lacks %q:\n%s", tc.wants, out)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.wants)):
				t.Fatalf("err %v, want one naming %s", err, tc.wants)
			}
			check()
		})
	}
}

// TestSettingsTable: docs/settings.md is what faultline config --markdown
// prints, so the table of settings cannot drift from their declarations.
func TestSettingsTable(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"config", "--markdown"}, &out); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "settings.md")
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Fatalf("docs/settings.md differs from 'faultline config --markdown'; regenerate it:\n\n" +
			"\tgo run ./cmd/faultline config --markdown > docs/settings.md   (or: go generate ./cmd/faultline)")
	}
	// Every setting faultline config lists is in the table.
	ss, err := settings()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if !strings.Contains(out.String(), "| `"+s.Key+"` |") {
			t.Errorf("%s is missing from the table", s.Key)
		}
	}
}

// TestConfigPlain: faultline config keeps its tab-separated lines, one per
// setting.
func TestConfigPlain(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"config"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if lines[0] != "FAULTLINE_LOG_LEVEL\tString\tinfo\tdebug, info, warn or error" {
		t.Errorf("first line %q", lines[0])
	}
	ss, _ := settings()
	if len(lines) != len(ss) || len(ss) < 80 {
		t.Errorf("%d lines for %d settings", len(lines), len(ss))
	}
}

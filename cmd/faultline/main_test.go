package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// asMain, set in a child's environment, makes the test binary run as the
// faultline binary (main with the child's arguments): tests start real
// faultline processes without a build step of their own.
const asMain = "GO_TEST_RUN_FAULTLINE"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(chtest.Main(m))
}

// faultlineCmd is a faultline process with args, its environment that of
// the test less every FAULTLINE_ variable, plus env.
func faultlineCmd(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix+"_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, asMain+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// TestCheckExits: faultline check, as a process, exits 0 when every named
// role's settings are valid and 1 when one is not, saying on stderr which
// variable is wrong, for every role it takes.
func TestCheckExits(t *testing.T) {
	joined := map[string]string{"FAULTLINE_NATS_URL": "nats://nats:4222", "FAULTLINE_CLICKHOUSE_ADDR": "clickhouse:9000"}
	for _, role := range checkRoles {
		env := map[string]string{}
		if role != "run" { // run embeds NATS and starts the local ClickHouse
			env = joined
		}
		out, err := faultlineCmd(t, env, "check", role).CombinedOutput()
		if err != nil || !strings.Contains(string(out), role+": settings valid") {
			t.Fatalf("faultline check %s with valid settings: %v\n%s", role, err, out)
		}
	}
	for _, tc := range []struct {
		role, key, val string
	}{
		{"run", "FAULTLINE_DATA_DIR", ""},
		{"gateway", "FAULTLINE_GATEWAY_LISTEN", "4318"},
		{"gateway", "FAULTLINE_NATS_URL", ""},
		{"worker", "FAULTLINE_WORKER_BATCH_RECORDS", "0"},
		{"worker", "FAULTLINE_CLICKHOUSE_ADDR", ""},
		{"correlator", "FAULTLINE_CORRELATOR_THRESHOLD", "2"},
		{"correlator", "FAULTLINE_WEBHOOK_SECRET", "without-a-url"},
		{"migrate", "FAULTLINE_CLICKHOUSE_DATABASE", "a-b"},
	} {
		t.Run(tc.role+"/"+tc.key, func(t *testing.T) {
			env := map[string]string{tc.key: tc.val}
			if tc.role != "run" {
				for k, v := range joined {
					if k != tc.key {
						env[k] = v
					}
				}
			}
			out, err := faultlineCmd(t, env, "check", tc.role).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("faultline check %s with %s=%q: %v, want exit status 1\n%s", tc.role, tc.key, tc.val, err, out)
			}
			if !strings.Contains(string(out), tc.key) {
				t.Fatalf("faultline check %s with %s=%q does not name it:\n%s", tc.role, tc.key, tc.val, out)
			}
		})
	}
}

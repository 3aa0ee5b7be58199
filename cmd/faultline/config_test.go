package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConfigErrorsNameTheVariable: a bad setting stops the process with a
// message naming the variable.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct{ env, val, want string }{
		{"FAULTLINE_LOG_LEVEL", "loud", "FAULTLINE_LOG_LEVEL"},
		{"FAULTLINE_ADMIN_LISTEN", "8888", "FAULTLINE_ADMIN_LISTEN"},
		{"FAULTLINE_NATS_REPLICAS", "0", "FAULTLINE_NATS_REPLICAS"},
		{"FAULTLINE_NATS_REPLICAS", "three", "NATS_REPLICAS"},
		{"FAULTLINE_CLICKHOUSE_ADDR", "db", "FAULTLINE_CLICKHOUSE_ADDR"},
		{"FAULTLINE_CLICKHOUSE_DATABASE", "a-b", "FAULTLINE_CLICKHOUSE_DATABASE"},
		{"FAULTLINE_WORKER_BATCH_RECORDS", "0", "FAULTLINE_WORKER_BATCH_RECORDS"},
		{"FAULTLINE_WORKER_GC_PERCENT", "5", "FAULTLINE_WORKER_GC_PERCENT"},
		{"FAULTLINE_SHUTDOWN_TIMEOUT", "soon", "SHUTDOWN_TIMEOUT"},
	} {
		t.Run(tc.env+"="+tc.val, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			_, err := loadConfig(roles["run"])
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadConfig(run) = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// TestConfigPerRole: a role validates the settings it reads and no others,
// since every Deployment of a cluster loads the same ConfigMap and Secret.
func TestConfigPerRole(t *testing.T) {
	joined := map[string]string{"FAULTLINE_NATS_URL": "nats://nats:4222", "FAULTLINE_CLICKHOUSE_ADDR": "clickhouse:9000"}
	for _, tc := range []struct {
		env map[string]string
		// the roles it stops, with the error naming want; the others start
		stops []string
		want  string
	}{
		{map[string]string{"FAULTLINE_WEBHOOK_SECRET": "s3cret"}, []string{"run", "correlator"}, "FAULTLINE_WEBHOOK_SECRET"},
		{map[string]string{"FAULTLINE_WEBHOOK_URL": "ftp://alerts"}, []string{"run", "correlator"}, "not an http(s) URL"},
		{map[string]string{"FAULTLINE_GATEWAY_LISTEN": "4318"}, []string{"run", "gateway"}, "FAULTLINE_GATEWAY_LISTEN"},
		{map[string]string{"FAULTLINE_WORKER_BATCH_RECORDS": "0"}, []string{"run", "worker"}, "FAULTLINE_WORKER_BATCH_RECORDS"},
		{map[string]string{"FAULTLINE_CORRELATOR_THRESHOLD": "2"}, []string{"run", "correlator"}, "FAULTLINE_CORRELATOR_THRESHOLD"},
		{map[string]string{"FAULTLINE_CORRELATOR_RULES_FILE": "/nonexistent.yaml"}, []string{"run", "worker", "correlator"}, "FAULTLINE_CORRELATOR_RULES_FILE"},
		{map[string]string{"FAULTLINE_CORRELATOR_RULES_FILE": "/nonexistent.yaml", "FAULTLINE_WORKER_AGGREGATES": "false"}, []string{"run", "correlator"}, "FAULTLINE_CORRELATOR_RULES_FILE"},
		{map[string]string{"FAULTLINE_NATS_REPLICAS": "0"}, []string{"run", "gateway", "worker", "correlator"}, "FAULTLINE_NATS_REPLICAS"},
		{map[string]string{"FAULTLINE_ADMIN_LISTEN": "8888"}, []string{"run", "gateway", "worker", "correlator"}, "FAULTLINE_ADMIN_LISTEN"},
		{map[string]string{"FAULTLINE_CLICKHOUSE_DATABASE": "a-b"}, []string{"run", "worker", "correlator", "migrate", "dora"}, "FAULTLINE_CLICKHOUSE_DATABASE"},
		{map[string]string{"FAULTLINE_NATS_URL": ""}, []string{"gateway", "worker", "correlator"}, "set FAULTLINE_NATS_URL"},
		{map[string]string{"FAULTLINE_CLICKHOUSE_ADDR": ""}, []string{"worker", "correlator", "migrate"}, "set FAULTLINE_CLICKHOUSE_ADDR"},
	} {
		for _, name := range []string{"run", "gateway", "worker", "correlator", "migrate", "dora"} {
			t.Run(fmt.Sprint(tc.env)+"/"+name, func(t *testing.T) {
				for k, v := range joined {
					t.Setenv(k, v)
				}
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				if name == "run" || name == "dora" {
					// They fall back to the local servers; run embeds
					// NATS only without an address.
					t.Setenv("FAULTLINE_NATS_URL", "")
				}
				_, err := loadConfig(roles[name])
				if slices.Contains(tc.stops, name) {
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("loadConfig(%s) = %v, want an error containing %q", name, err, tc.want)
					}
				} else if err != nil {
					t.Fatalf("loadConfig(%s) = %v, want no error: the role does not read %v", name, err, tc.env)
				}
			})
		}
	}
}

func TestConfigDefaultsValid(t *testing.T) {
	c, err := loadConfig(roles["run"])
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Listen != "127.0.0.1:4222" || c.ClickHouse.Database != "faultline" || c.AdminListen != "127.0.0.1:8888" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"30d", now.AddDate(0, 0, -30), true},
		{"2w", now.AddDate(0, 0, -14), true},
		{"12h", now.Add(-12 * time.Hour), true},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), true},
		{"xd", time.Time{}, false},
		{"-3d", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	} {
		got, err := parseSince(tc.in, now)
		if (err == nil) != tc.ok || (tc.ok && !got.Equal(tc.want)) {
			t.Errorf("parseSince(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

package main

import (
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
			_, err := loadConfig()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadConfig() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestConfigDefaultsValid(t *testing.T) {
	c, err := loadConfig()
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

package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestReplayScenarios: `faultline replay --scenario` sends the chosen
// scenario, names the realistic one's real incidents, and refuses an
// unknown name.
func TestReplayScenarios(t *testing.T) {
	for _, c := range []struct {
		scenario string
		want     []string // in the output
		wantErr  string
	}{
		{scenario: "reference", want: []string{"sent 1766 requests"}},
		{scenario: "realistic", want: []string{"the 8 real incidents", "canary     cart/production 10:50-11:10 version_errors, caused by v4.2.0",
			"outage     recommendations/production 11:40-11:55 errors, caused by no deploy"}},
		{scenario: "production", wantErr: `--scenario "production", want reference or realistic`},
	} {
		t.Run(c.scenario, func(t *testing.T) {
			var mu sync.Mutex
			paths := map[string]int{}
			gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths[r.URL.Path]++
				mu.Unlock()
			}))
			defer gw.Close()
			var out bytes.Buffer
			err := cmdReplay(context.Background(), []string{"--gateway", gw.URL, "--scenario", c.scenario}, &out)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if paths["/v1/logs"] == 0 || paths["/v1/metrics"] == 0 || paths["/v1/deploys"] == 0 {
				t.Errorf("requests by path: %v", paths)
			}
		})
	}
}

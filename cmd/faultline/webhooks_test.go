package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCICDWebhooksEndToEnd runs `faultline run` with the CI/CD webhooks'
// secrets set, posts the vendors' example deliveries as they would (GitHub's
// two pushes before the deployment that ships them, GitLab, Argo CD and
// Flux signed or with their tokens), and reads the deploys back from
// ClickHouse: the GitHub deploy's lead time reaches back to the first
// pushed commit it shipped.
func TestCICDWebhooksEndToEnd(t *testing.T) {
	ctx, s, stop := startRun(t, map[string]string{
		"FAULTLINE_GATEWAY_GRPC_LISTEN":   "",
		"FAULTLINE_GATEWAY_GITHUB_SECRET": "gh-secret",
		"FAULTLINE_GATEWAY_GITLAB_TOKEN":  "gl-token",
		"FAULTLINE_GATEWAY_ARGOCD_TOKEN":  "argo-token",
		"FAULTLINE_GATEWAY_FLUX_SECRET":   "flux-key",
	})

	hmacHex := func(secret string, b []byte) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(b)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	for _, d := range []struct {
		path, vendor, file string
		hdr                func(body []byte) map[string]string
		code               int
	}{
		{"/v1/github", "github", "push-new-branch.json", func(b []byte) map[string]string {
			return map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": hmacHex("gh-secret", b)}
		}, 200},
		{"/v1/github", "github", "push-deployed.json", func(b []byte) map[string]string {
			return map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": hmacHex("gh-secret", b)}
		}, 200},
		{"/v1/github", "github", "deployment_status-success.json", func(b []byte) map[string]string {
			return map[string]string{"X-GitHub-Event": "deployment_status", "X-Hub-Signature-256": hmacHex("gh-secret", b)}
		}, 202},
		{"/v1/gitlab", "gitlab", "deployment-success.json", func([]byte) map[string]string {
			return map[string]string{"X-Gitlab-Event": "Deployment Hook", "X-Gitlab-Token": "gl-token"}
		}, 202},
		{"/v1/argocd", "argocd", "deployed.json", func([]byte) map[string]string {
			return map[string]string{"Authorization": "Bearer argo-token"}
		}, 202},
		{"/v1/flux", "flux", "kustomization-reconciliation-succeeded.json", func(b []byte) map[string]string {
			return map[string]string{"X-Signature": hmacHex("flux-key", b)}
		}, 202},
	} {
		body, err := os.ReadFile(filepath.Join("../../testdata/vendors", d.vendor, d.file))
		if err != nil {
			t.Fatal(err)
		}
		r, _ := http.NewRequest(http.MethodPost, "http://"+s.gateway.Addr()+d.path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		for k, v := range d.hdr(body) {
			r.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != d.code {
			t.Fatalf("%s %s: %d, want %d", d.path, d.file, resp.StatusCode, d.code)
		}
	}

	type row struct {
		env, version string
		lead         *float64
	}
	want := map[string]row{
		"Hello-World":              {"production", "f95f852bd8fc", ptr(52)}, // deployed 15:20:55; the median of its two commits, 15:19:25 (90 s) and 15:20:41 (14 s)
		"test-deployment-webhooks": {"staging", "279484c09fbe", nil},
		"guestbook":                {"production", "53e28ff20cc5", nil},
		"webapp":                   {"production", "9a0c5fe1b3c8", nil},
	}
	got := map[string]row{}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && len(got) < len(want); time.Sleep(250 * time.Millisecond) {
		rows, err := s.ch.Query(ctx, "SELECT Service, Environment, Version, LeadTimeSeconds FROM deploys FINAL WHERE Status = 'succeeded'")
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]row{}
		for rows.Next() {
			var svc string
			var r row
			if err := rows.Scan(&svc, &r.env, &r.version, &r.lead); err != nil {
				t.Fatal(err)
			}
			got[svc] = r
		}
		rows.Close()
	}
	for svc, w := range want {
		g, ok := got[svc]
		if !ok || g.env != w.env || g.version != w.version || (g.lead == nil) != (w.lead == nil) || (g.lead != nil && *g.lead != *w.lead) {
			t.Errorf("%s: stored %s %s lead %v, want %s %s lead %v", svc, g.env, g.version, deref(g.lead), w.env, w.version, deref(w.lead))
		}
	}
	stop()
}

func ptr(f float64) *float64 { return &f }

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

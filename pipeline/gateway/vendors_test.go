package gateway_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/processors/events"
)

func fixture(t *testing.T, vendor, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/vendors", vendor, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit changes fields of a JSON fixture.
func edit(t *testing.T, body []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, _ := json.Marshal(m)
	return b
}

func sub(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

type answer struct {
	Accepted int    `json:"accepted"`
	Ignored  string `json:"ignored"`
	Commits  int    `json:"commits"`
	ID       string `json:"id"`
	Error    string `json:"error"`
	Field    string `json:"field"`
}

func deliver(t *testing.T, g *gateway.Gateway, path string, hdr map[string]string, body []byte) (int, answer) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, "http://"+g.Addr()+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s answered %d %q", path, resp.StatusCode, b)
	}
	return resp.StatusCode, a
}

// storedDeploys reads every deploy event in the stream, by id and status.
func storedDeploys(t *testing.T, ns *natstest.Server) map[string]events.Deploy {
	t.Helper()
	ctx := context.Background()
	s, err := ns.JS.Stream(ctx, ns.Config.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]events.Deploy{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var d events.Deploy
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[d.MsgID()]; dup {
			t.Fatalf("deploy %s stored twice", d.MsgID())
		}
		out[d.MsgID()] = d
	}
	return out
}

func webhookConfig() gateway.Config {
	c := testConfig()
	c.Token = "bearer-tok"
	c.GitHubSecret = "gh-secret"
	c.GitLabToken = "gl-token"
	c.ArgoCDToken = "argo-token"
	c.FluxSecret = "flux-key"
	c.GitHubServiceMap = "octo-org/payments=payments-api"
	return c
}

type step struct {
	name   string
	path   string
	hdr    map[string]string
	body   []byte
	code   int
	check  func(t *testing.T, a answer)
	stored int // deploys in the stream after the step
}

func run(t *testing.T, ns *natstest.Server, g *gateway.Gateway, steps []step) {
	t.Helper()
	for _, s := range steps {
		code, a := deliver(t, g, s.path, s.hdr, s.body)
		if code != s.code {
			t.Fatalf("%s: %d %+v, want %d", s.name, code, a, s.code)
		}
		if s.check != nil {
			s.check(t, a)
		}
		if n := len(storedDeploys(t, ns)); n != s.stored {
			t.Fatalf("%s: %d deploys stored, want %d", s.name, n, s.stored)
		}
	}
}

func ignored(want string) func(*testing.T, answer) {
	return func(t *testing.T, a answer) {
		if a.Accepted != 0 || !strings.Contains(a.Ignored, want) {
			t.Fatalf("answer %+v, want ignored: %s", a, want)
		}
	}
}

func accepted(commits int) func(*testing.T, answer) {
	return func(t *testing.T, a answer) {
		if a.Accepted != 1 || a.Commits != commits || a.ID == "" {
			t.Fatalf("answer %+v, want accepted with %d commits", a, commits)
		}
	}
}

func badField(field string) func(*testing.T, answer) {
	return func(t *testing.T, a answer) {
		if a.Field != field || a.Error == "" {
			t.Fatalf("answer %+v, want an error naming %s", a, field)
		}
	}
}

// TestGitHubWebhook: ping and in-progress statuses are ignored, pushes are
// remembered, a deploy carries the commits of every push since the
// previous deploy, a repeated delivery is stored once, and a bad signature
// or body stores nothing.
func TestGitHubWebhook(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, webhookConfig())
	gh := func(event string, body []byte) map[string]string {
		return map[string]string{"X-GitHub-Event": event, "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-Hub-Signature-256": sign("gh-secret", body)}
	}
	deployBody := fixture(t, "github", "deployment_status-success.json")
	// The next push and its deploy: only that push's commit is new.
	nextSHA := "2c1e3b7f9d40a5e6b8c7d6e5f4a3b2c1d0e9f8a7"
	nextPush := edit(t, fixture(t, "github", "push-deployed.json"), func(m map[string]any) {
		m["before"], m["after"] = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e", nextSHA
		c := m["commits"].([]any)[0].(map[string]any)
		c["id"], c["timestamp"] = nextSHA, "2019-05-15T17:02:00Z"
		m["head_commit"] = c
	})
	nextDeploy := edit(t, deployBody, func(m map[string]any) {
		sub(m, "deployment")["sha"], sub(m, "deployment")["id"] = nextSHA, 145990001
		sub(m, "deployment_status")["updated_at"] = "2019-05-15T17:30:00Z"
	})
	broken := edit(t, deployBody, func(m map[string]any) {
		delete(sub(m, "deployment"), "environment")
		delete(sub(m, "deployment_status"), "environment")
	})
	ping := fixture(t, "github", "ping.json")
	run(t, ns, g, []step{
		{name: "ping", path: "/v1/github", hdr: gh("ping", ping), body: ping, code: 200, check: ignored("ping")},
		{name: "push creating master", path: "/v1/github", hdr: gh("push", fixture(t, "github", "push-new-branch.json")), body: fixture(t, "github", "push-new-branch.json"), code: 200},
		{name: "push of the deployed commit", path: "/v1/github", hdr: gh("push", fixture(t, "github", "push-deployed.json")), body: fixture(t, "github", "push-deployed.json"), code: 200},
		{name: "bad signature", path: "/v1/github", hdr: gh("deployment_status", []byte("other body")), body: deployBody, code: 401},
		{name: "bearer token instead of signature", path: "/v1/github", hdr: map[string]string{"X-GitHub-Event": "deployment_status", "Authorization": "Bearer bearer-tok"}, body: deployBody, code: 401},
		{name: "in progress", path: "/v1/github", hdr: gh("deployment_status", fixture(t, "github", "deployment_status-in_progress.json")), body: fixture(t, "github", "deployment_status-in_progress.json"), code: 200, check: ignored("state in_progress")},
		{name: "deploy", path: "/v1/github", hdr: gh("deployment_status", deployBody), body: deployBody, code: 202, check: accepted(2), stored: 1},
		{name: "repeated delivery", path: "/v1/github", hdr: gh("deployment_status", deployBody), body: deployBody, code: 200, check: ignored("already stored"), stored: 1},
		{name: "missing environment", path: "/v1/github", hdr: gh("deployment_status", broken), body: broken, code: 400, check: badField("deployment.environment"), stored: 1},
		{name: "truncated body", path: "/v1/github", hdr: gh("deployment_status", deployBody[:300]), body: deployBody[:300], code: 400, check: badField("(body)"), stored: 1},
		{name: "no event header", path: "/v1/github", hdr: map[string]string{"X-Hub-Signature-256": sign("gh-secret", deployBody)}, body: deployBody, code: 400, check: badField("X-GitHub-Event"), stored: 1},
		{name: "next push", path: "/v1/github", hdr: gh("push", nextPush), body: nextPush, code: 200, stored: 1},
		{name: "next deploy", path: "/v1/github", hdr: gh("deployment_status", nextDeploy), body: nextDeploy, code: 202, check: accepted(1), stored: 2},
	})
	byVersion := map[string]events.Deploy{}
	for _, d := range storedDeploys(t, ns) {
		byVersion[d.Version] = d
	}
	first := byVersion["f95f852bd8fc"]
	want := []events.Commit{
		{SHA: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", Timestamp: time.Date(2019, 5, 15, 15, 19, 25, 0, time.UTC)},
		{SHA: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e", Timestamp: time.Date(2019, 5, 15, 15, 20, 41, 0, time.UTC)},
	}
	if first.Service != "Hello-World" || first.Environment != "production" || first.Status != events.StatusSucceeded || !sameCommits(first.Commits, want) {
		t.Fatalf("first deploy stored as %+v", first)
	}
	next := byVersion["2c1e3b7f9d40"]
	if len(next.Commits) != 1 || next.Commits[0].SHA != nextSHA {
		t.Fatalf("next deploy shipped %+v, want only %s", next.Commits, nextSHA)
	}
}

func sameCommits(a, b []events.Commit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].SHA != b[i].SHA || !a[i].Timestamp.Equal(b[i].Timestamp) {
			return false
		}
	}
	return true
}

func TestGitLabWebhook(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, webhookConfig())
	tok := func(event string) map[string]string {
		return map[string]string{"X-Gitlab-Event": event, "X-Gitlab-Token": "gl-token", "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e"}
	}
	deployBody := fixture(t, "gitlab", "deployment-success.json")
	// A deploy of the documented push's head commit carries its commits.
	pushed := edit(t, deployBody, func(m map[string]any) {
		m["commit_url"] = "http://example.com/mike/diaspora/-/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
		m["status_changed_at"] = "2012-01-04 09:00:00 +0200"
		sub(m, "project")["path_with_namespace"] = "mike/diaspora"
	})
	run(t, ns, g, []step{
		{name: "tag push", path: "/v1/gitlab", hdr: tok("Tag Push Hook"), body: fixture(t, "gitlab", "tag-push.json"), code: 200, check: ignored("tag_push")},
		{name: "push", path: "/v1/gitlab", hdr: tok("Push Hook"), body: fixture(t, "gitlab", "push.json"), code: 200},
		{name: "wrong token", path: "/v1/gitlab", hdr: map[string]string{"X-Gitlab-Token": "nope"}, body: deployBody, code: 401},
		{name: "deploy", path: "/v1/gitlab", hdr: tok("Deployment Hook"), body: deployBody, code: 202, check: accepted(0), stored: 1},
		{name: "repeated delivery", path: "/v1/gitlab", hdr: tok("Deployment Hook"), body: deployBody, code: 200, check: ignored("already stored"), stored: 1},
		{name: "missing time", path: "/v1/gitlab", hdr: tok("Deployment Hook"), body: edit(t, deployBody, func(m map[string]any) { delete(m, "status_changed_at") }), code: 400, check: badField("status_changed_at"), stored: 1},
		{name: "deploy of the pushed commit", path: "/v1/gitlab", hdr: tok("Deployment Hook"), body: pushed, code: 202, check: accepted(2), stored: 2},
	})
	for _, d := range storedDeploys(t, ns) {
		if d.Service == "diaspora" && (d.Version != "da1560886d4f" || len(d.Commits) != 2) {
			t.Fatalf("deploy of the pushed commit stored as %+v", d)
		}
	}
}

func TestArgoCDWebhook(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, webhookConfig())
	bearer := map[string]string{"Authorization": "Bearer argo-token"}
	body := fixture(t, "argocd", "deployed.json")
	run(t, ns, g, []step{
		{name: "gateway token", path: "/v1/argocd", hdr: map[string]string{"Authorization": "Bearer bearer-tok"}, body: body, code: 401},
		{name: "no token", path: "/v1/argocd", body: body, code: 401},
		{name: "deployed", path: "/v1/argocd", hdr: bearer, body: body, code: 202, check: accepted(0), stored: 1},
		{name: "repeated delivery", path: "/v1/argocd", hdr: bearer, body: body, code: 200, check: ignored("already stored"), stored: 1},
		{name: "sync failed", path: "/v1/argocd", hdr: bearer, body: fixture(t, "argocd", "sync-failed.json"), code: 202, check: accepted(0), stored: 2},
		{name: "no phase", path: "/v1/argocd", hdr: bearer, body: edit(t, body, func(m map[string]any) { delete(m, "phase") }), code: 400, check: badField("phase"), stored: 2},
		{name: "running", path: "/v1/argocd", hdr: bearer, body: edit(t, body, func(m map[string]any) { m["phase"] = "Running" }), code: 200, check: ignored("Running"), stored: 2},
	})
}

// TestFluxWebhook: a Kustomization reports its revision at every
// reconciliation; only a new one is a deploy.
func TestFluxWebhook(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, webhookConfig())
	signed := func(b []byte) map[string]string { return map[string]string{"X-Signature": sign("flux-key", b)} }
	ok := fixture(t, "flux", "kustomization-reconciliation-succeeded.json")
	again := edit(t, ok, func(m map[string]any) {
		m["timestamp"], m["message"] = "2022-10-28T07:51:03Z", "Reconciliation finished in 1.9s, next run in 10m0s"
	})
	failed := fixture(t, "flux", "kustomization-validation-failed.json")
	helm := fixture(t, "flux", "helmrelease-upgrade-succeeded.json")
	noKind := edit(t, ok, func(m map[string]any) { delete(sub(m, "involvedObject"), "kind") })
	run(t, ns, g, []step{
		{name: "bad signature", path: "/v1/flux", hdr: signed([]byte("{}")), body: ok, code: 401},
		{name: "unsigned", path: "/v1/flux", body: ok, code: 401},
		{name: "progressing", path: "/v1/flux", hdr: signed(fixture(t, "flux", "kustomization-progressing.json")), body: fixture(t, "flux", "kustomization-progressing.json"), code: 200, check: ignored("Progressing")},
		{name: "reconciled", path: "/v1/flux", hdr: signed(ok), body: ok, code: 202, check: accepted(0), stored: 1},
		{name: "repeated delivery", path: "/v1/flux", hdr: signed(ok), body: ok, code: 200, check: ignored("already stored"), stored: 1},
		{name: "same revision reconciled again", path: "/v1/flux", hdr: signed(again), body: again, code: 200, check: ignored("already reported revision"), stored: 1},
		{name: "new revision fails", path: "/v1/flux", hdr: signed(failed), body: failed, code: 202, check: accepted(0), stored: 2},
		{name: "helm upgrade", path: "/v1/flux", hdr: signed(helm), body: helm, code: 202, check: accepted(0), stored: 3},
		{name: "source event", path: "/v1/flux", hdr: signed(fixture(t, "flux", "gitrepository-new-artifact.json")), body: fixture(t, "flux", "gitrepository-new-artifact.json"), code: 200, check: ignored("not deploys"), stored: 3},
		{name: "no kind", path: "/v1/flux", hdr: signed(noKind), body: noKind, code: 400, check: badField("involvedObject.kind"), stored: 3},
	})
	for _, d := range storedDeploys(t, ns) {
		if d.Service == "webapp" && d.Status == events.StatusSucceeded && (d.Environment != "production" || d.Version != "9a0c5fe1b3c8") {
			t.Fatalf("reconciliation stored as %+v", d)
		}
	}
}

// TestWebhookAuthFallback: an endpoint without its vendor secret requires
// the gateway's bearer token, and Argo CD's token may come in a header of
// its own. The body size limit applies to every endpoint.
func TestWebhookAuthFallback(t *testing.T) {
	ns := natstest.Start(t)
	c := testConfig()
	c.Token = "tok"
	c.ArgoCDToken = "argo"
	c.ArgoCDHeader = "X-Argo-Token"
	g := start(t, ns, c)
	ping := fixture(t, "github", "ping.json")
	argo := fixture(t, "argocd", "deployed.json")
	run(t, ns, g, []step{
		{name: "github without bearer", path: "/v1/github", hdr: map[string]string{"X-GitHub-Event": "ping"}, body: ping, code: 401},
		{name: "github with bearer", path: "/v1/github", hdr: map[string]string{"X-GitHub-Event": "ping", "Authorization": "Bearer tok"}, body: ping, code: 200},
		{name: "flux with bearer", path: "/v1/flux", hdr: map[string]string{"Authorization": "Bearer tok"}, body: fixture(t, "flux", "kustomization-progressing.json"), code: 200},
		{name: "argo token as bearer", path: "/v1/argocd", hdr: map[string]string{"Authorization": "Bearer argo"}, body: argo, code: 401},
		{name: "argo token in its header", path: "/v1/argocd", hdr: map[string]string{"X-Argo-Token": "argo"}, body: argo, code: 202, stored: 1},
		{name: "oversized", path: "/v1/argocd", hdr: map[string]string{"X-Argo-Token": "argo"}, body: bytes.Repeat([]byte(" "), 2<<20), code: 413, stored: 1},
	})
}

func TestWebhookConfig(t *testing.T) {
	for _, tc := range []struct {
		edit func(c *gateway.Config)
		want string
	}{
		{func(c *gateway.Config) { c.GitHubServiceMap = "checkout" }, "FAULTLINE_GATEWAY_GITHUB_SERVICE_MAP"},
		{func(c *gateway.Config) { c.GitLabServiceMap = "group/project=" }, "FAULTLINE_GATEWAY_GITLAB_SERVICE_MAP"},
		{func(c *gateway.Config) { c.ArgoCDHeader = "X Token" }, "FAULTLINE_GATEWAY_ARGOCD_HEADER"},
		{func(c *gateway.Config) { c.WebhookStateTTL = time.Minute }, "FAULTLINE_GATEWAY_WEBHOOK_STATE_TTL"},
	} {
		c := testConfig()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.want, err)
		}
	}
	c := testConfig()
	c.GitHubServiceMap, c.ArgoCDHeader, c.WebhookStateTTL = "octo/web=frontend, octo/api=api", "X-Argo-Token", 48*time.Hour
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

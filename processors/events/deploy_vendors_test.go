package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the *.want.json files of testdata/vendors")

// vendors is the top-level folder of the vendors' example deliveries.
const vendors = "../../testdata/vendors"

func readFixture(t testing.TB, vendor, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vendors, vendor, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edited returns a fixture with some fields changed, for the cases the
// vendors' examples do not show (a failed state, a payload version).
func edited(t testing.TB, body []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

var (
	githubConfig = GitHubConfig{Services: map[string]string{"octo-org/payments": "payments-api"}}
	gitlabConfig = GitLabConfig{Services: map[string]string{"mike/diaspora": "diaspora-web"}}
)

// TestVendorFixtures parses every example delivery to the exact deploy,
// push or reason to ignore it that its .want.json holds.
func TestVendorFixtures(t *testing.T) {
	github := func(event string) func([]byte) (Delivery, error) {
		return func(b []byte) (Delivery, error) { return FromGitHub(event, b, githubConfig) }
	}
	gitlab := func(b []byte) (Delivery, error) { return FromGitLab(b, gitlabConfig) }
	for _, tc := range []struct {
		vendor, file, want string
		parse              func([]byte) (Delivery, error)
		edit               func(m map[string]any)
	}{
		{vendor: "github", file: "deployment_status-success.json", parse: github("deployment_status")},
		{vendor: "github", file: "deployment_status-success.json", want: "deployment_status-failure", parse: github("deployment_status"),
			edit: func(m map[string]any) {
				st := obj(m, "deployment_status")
				st["state"], st["updated_at"], st["log_url"] = "failure", "2019-05-15T15:24:10Z", "https://github.com/Codertocat/Hello-World/actions/runs/1"
			}},
		{vendor: "github", file: "deployment_status-success.json", want: "deployment_status-payload", parse: github("deployment_status"),
			edit: func(m map[string]any) {
				obj(m, "deployment")["payload"] = map[string]any{"version": "2.4.0", "service": "hello-api"}
			}},
		{vendor: "github", file: "deployment_status-success.json", want: "deployment_status-tag-mapped", parse: github("deployment_status"),
			edit: func(m map[string]any) {
				obj(m, "deployment")["ref"] = "v1.8.2"
				obj(m, "repository")["full_name"] = "octo-org/Payments"
			}},
		{vendor: "github", file: "deployment_status-in_progress.json", parse: github("deployment_status")},
		{vendor: "github", file: "push-new-branch.json", parse: github("push")},
		{vendor: "github", file: "push-deployed.json", parse: github("push")},
		{vendor: "github", file: "push-delete-tag.json", parse: github("push")},
		{vendor: "github", file: "ping.json", parse: github("ping")},
		{vendor: "gitlab", file: "deployment-success.json", parse: gitlab},
		{vendor: "gitlab", file: "deployment-success.json", want: "deployment-canceled-tag", parse: gitlab,
			edit: func(m map[string]any) {
				m["status"], m["status_changed_at"], m["ref"] = "canceled", "2021-04-28T19:52:00Z", "v3.0.1"
			}},
		{vendor: "gitlab", file: "deployment-success.json", want: "deployment-running", parse: gitlab,
			edit: func(m map[string]any) { m["status"] = "running" }},
		{vendor: "gitlab", file: "push.json", parse: gitlab},
		{vendor: "gitlab", file: "tag-push.json", parse: gitlab},
		{vendor: "argocd", file: "deployed.json", parse: FromArgoCD},
		{vendor: "argocd", file: "sync-failed.json", parse: FromArgoCD},
		{vendor: "argocd", file: "helm-chart-deployed.json", parse: FromArgoCD},
		{vendor: "argocd", file: "deployed.json", want: "running", parse: FromArgoCD,
			edit: func(m map[string]any) { m["phase"] = "Running" }},
		{vendor: "flux", file: "kustomization-validation-failed.json", parse: FromFlux},
		{vendor: "flux", file: "kustomization-reconciliation-succeeded.json", parse: FromFlux},
		{vendor: "flux", file: "kustomization-progressing.json", parse: FromFlux},
		{vendor: "flux", file: "helmrelease-upgrade-succeeded.json", parse: FromFlux},
		{vendor: "flux", file: "helmrelease-upgrade-succeeded.json", want: "helmrelease-rollback-succeeded", parse: FromFlux,
			edit: func(m map[string]any) {
				m["reason"], m["timestamp"] = "RollbackSucceeded", "2024-03-14T09:20:02Z"
				m["metadata"] = map[string]any{"revision": "6.5.3", "app-version": "6.5.3"}
			}},
		{vendor: "flux", file: "gitrepository-new-artifact.json", parse: FromFlux},
	} {
		want := tc.want
		if want == "" {
			want = strings.TrimSuffix(tc.file, ".json")
		}
		t.Run(tc.vendor+"/"+want, func(t *testing.T) {
			body := readFixture(t, tc.vendor, tc.file)
			if tc.edit != nil {
				body = edited(t, body, tc.edit)
			}
			got, err := tc.parse(body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.MarshalIndent(got, "", "  ")
			b = append(b, '\n')
			path := filepath.Join(vendors, tc.vendor, want+".want.json")
			if *update {
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantB, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, wantB) {
				t.Fatalf("parsed to\n%s\nwant (%s)\n%s", b, path, wantB)
			}
			checkDelivery(t, got)
			// The vendor repeating the delivery gets the same deploy id.
			if again, _ := tc.parse(body); got.Deploy != nil && (again.Deploy.ID != got.Deploy.ID || again.Deploy.MsgID() != got.Deploy.MsgID()) {
				t.Fatalf("repeated delivery: id %s, first %s", again.Deploy.ID, got.Deploy.ID)
			}
		})
	}
}

// checkDelivery holds the invariants the gateway relies on.
func checkDelivery(t testing.TB, dl Delivery) {
	t.Helper()
	n := 0
	for _, set := range []bool{dl.Deploy != nil, dl.Push != nil, dl.Ignored != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("a delivery is a deploy, a push or ignored, exactly one: %+v", dl)
	}
	if d := dl.Deploy; d != nil {
		if d.Service == "" || d.Environment == "" || d.Version == "" || d.Timestamp.IsZero() || d.ID != DeployID(*d) ||
			(d.Status != StatusSucceeded && d.Status != StatusFailed) || (d.Type != TypeDeploy && d.Type != TypeRollback) {
			t.Fatalf("incomplete deploy: %+v", d)
		}
		for _, s := range []string{d.Service, d.Environment, d.Version, d.Commit, d.Author, d.URL} {
			if len(s) > maxFieldLen {
				t.Fatalf("a field of %d bytes: %+v", len(s), d)
			}
		}
		if dl.Repository != "" && !isSHA(d.Commit) {
			t.Fatalf("repository %q without a full commit sha: %+v", dl.Repository, d)
		}
	}
	if p := dl.Push; p != nil {
		if p.Repository == "" || !isSHA(p.After) || len(p.Commits) > maxCommits {
			t.Fatalf("bad push: %+v", p)
		}
		for _, c := range p.Commits {
			if !isSHA(c.SHA) || c.Timestamp.IsZero() {
				t.Fatalf("bad commit in push: %+v", c)
			}
		}
	}
}

func TestGitHubChoices(t *testing.T) {
	body := readFixture(t, "github", "deployment_status-success.json")
	for _, tc := range []struct {
		name                     string
		edit                     func(m map[string]any)
		service, version, status string
		at                       time.Time
	}{
		{"branch ref: the short sha", func(map[string]any) {}, "Hello-World", "f95f852bd8fc", StatusSucceeded, time.Date(2019, 5, 15, 15, 20, 55, 0, time.UTC)},
		{"refs/tags ref", func(m map[string]any) { obj(m, "deployment")["ref"] = "refs/tags/release-7" }, "Hello-World", "release-7", StatusSucceeded, time.Date(2019, 5, 15, 15, 20, 55, 0, time.UTC)},
		{"payload as a JSON string", func(m map[string]any) { obj(m, "deployment")["payload"] = `{"version":"9.9.9"}` }, "Hello-World", "9.9.9", StatusSucceeded, time.Date(2019, 5, 15, 15, 20, 55, 0, time.UTC)},
		{"free-form payload string", func(m map[string]any) { obj(m, "deployment")["payload"] = "deploy it" }, "Hello-World", "f95f852bd8fc", StatusSucceeded, time.Date(2019, 5, 15, 15, 20, 55, 0, time.UTC)},
		{"error state, created_at only", func(m map[string]any) {
			st := obj(m, "deployment_status")
			st["state"], st["updated_at"] = "error", ""
		}, "Hello-World", "f95f852bd8fc", StatusFailed, time.Date(2019, 5, 15, 15, 20, 55, 0, time.UTC)},
		{"service map", func(m map[string]any) { obj(m, "repository")["full_name"] = "Octo-Org/payments" }, "payments-api", "f95f852bd8fc", StatusSucceeded, time.Date(2019, 5, 15, 15, 20, 55, 0, time.UTC)},
		{"payload service wins over the map", func(m map[string]any) {
			obj(m, "repository")["full_name"] = "octo-org/payments"
			obj(m, "deployment")["payload"] = map[string]any{"service": "ledger"}
		}, "ledger", "f95f852bd8fc", StatusSucceeded, time.Date(2019, 5, 15, 15, 20, 55, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dl, err := FromGitHub("deployment_status", edited(t, body, tc.edit), githubConfig)
			if err != nil {
				t.Fatal(err)
			}
			d := dl.Deploy
			if d == nil || d.Service != tc.service || d.Version != tc.version || d.Status != tc.status || !d.Timestamp.Equal(tc.at) {
				t.Fatalf("got %+v", dl.Deploy)
			}
		})
	}
}

// TestVendorFieldErrors: bad input names the field at fault.
func TestVendorFieldErrors(t *testing.T) {
	ghDeploy := readFixture(t, "github", "deployment_status-success.json")
	ghPush := readFixture(t, "github", "push-deployed.json")
	glDeploy := readFixture(t, "gitlab", "deployment-success.json")
	argo := readFixture(t, "argocd", "deployed.json")
	flux := readFixture(t, "flux", "kustomization-reconciliation-succeeded.json")
	github := func(event string) func([]byte) (Delivery, error) {
		return func(b []byte) (Delivery, error) { return FromGitHub(event, b, githubConfig) }
	}
	gitlab := func(b []byte) (Delivery, error) { return FromGitLab(b, gitlabConfig) }
	for _, tc := range []struct {
		name  string
		parse func([]byte) (Delivery, error)
		body  []byte
		field string
	}{
		{"github no event header", github(""), ghDeploy, "X-GitHub-Event"},
		{"github odd event header", github("Deploy Status!"), ghDeploy, "X-GitHub-Event"},
		{"github truncated", github("deployment_status"), ghDeploy[:200], "(body)"},
		{"github array", github("ping"), []byte(`[1]`), "(body)"},
		{"github no environment", github("deployment_status"), edited(t, ghDeploy, func(m map[string]any) {
			delete(obj(m, "deployment"), "environment")
			delete(obj(m, "deployment_status"), "environment")
		}), "deployment.environment"},
		{"github sha a number", github("deployment_status"), edited(t, ghDeploy, func(m map[string]any) { obj(m, "deployment")["sha"] = 7 }), "deployment.sha"},
		{"github sha not hex", github("deployment_status"), edited(t, ghDeploy, func(m map[string]any) { obj(m, "deployment")["sha"] = "master" }), "deployment.sha"},
		{"github bad time", github("deployment_status"), edited(t, ghDeploy, func(m map[string]any) { obj(m, "deployment_status")["updated_at"] = "yesterday" }), "deployment_status.updated_at"},
		{"github payload version a number", github("deployment_status"), edited(t, ghDeploy, func(m map[string]any) { obj(m, "deployment")["payload"] = map[string]any{"version": 2} }), "deployment.payload.version"},
		{"github no repository", github("deployment_status"), edited(t, ghDeploy, func(m map[string]any) { delete(m, "repository") }), "repository"},
		{"github push commit time", github("push"), edited(t, ghPush, func(m map[string]any) {
			m["commits"].([]any)[0].(map[string]any)["timestamp"] = "noon"
		}), "commits[0].timestamp"},
		{"github push after", github("push"), edited(t, ghPush, func(m map[string]any) { m["after"] = "HEAD" }), "after"},
		{"gitlab no object_kind", gitlab, edited(t, glDeploy, func(m map[string]any) { delete(m, "object_kind") }), "object_kind"},
		{"gitlab status a number", gitlab, edited(t, glDeploy, func(m map[string]any) { m["status"] = 1 }), "status"},
		{"gitlab no time", gitlab, edited(t, glDeploy, func(m map[string]any) { delete(m, "status_changed_at") }), "status_changed_at"},
		{"gitlab no commit", gitlab, edited(t, glDeploy, func(m map[string]any) { delete(m, "commit_url"); delete(m, "short_sha") }), "commit_url"},
		{"gitlab no project", gitlab, edited(t, glDeploy, func(m map[string]any) { delete(m, "project") }), "project"},
		{"argocd no phase", FromArgoCD, edited(t, argo, func(m map[string]any) { delete(m, "phase") }), "phase"},
		{"argocd odd phase", FromArgoCD, edited(t, argo, func(m map[string]any) { m["phase"] = "Done" }), "phase"},
		{"argocd no environment", FromArgoCD, edited(t, argo, func(m map[string]any) { m["environment"] = "<no value>"; m["namespace"] = "" }), "environment"},
		{"argocd no revision", FromArgoCD, edited(t, argo, func(m map[string]any) { m["revision"] = "<no value>" }), "revision"},
		{"argocd finished_at", FromArgoCD, edited(t, argo, func(m map[string]any) { m["finished_at"] = "<no value>" }), "finished_at"},
		{"flux no kind", FromFlux, edited(t, flux, func(m map[string]any) { delete(obj(m, "involvedObject"), "kind") }), "involvedObject.kind"},
		{"flux severity", FromFlux, edited(t, flux, func(m map[string]any) { m["severity"] = "fatal" }), "severity"},
		{"flux metadata not strings", FromFlux, edited(t, flux, func(m map[string]any) { m["metadata"] = map[string]any{"revision": 1} }), "metadata"},
		{"flux timestamp", FromFlux, edited(t, flux, func(m map[string]any) { m["timestamp"] = 1666942863 }), "timestamp"},
		{"flux helm release without revision", FromFlux, edited(t, readFixture(t, "flux", "helmrelease-upgrade-succeeded.json"),
			func(m map[string]any) { m["metadata"] = map[string]any{} }), "metadata.revision"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dl, err := tc.parse(tc.body)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %+v, %v; want an error naming %s", dl, err, tc.field)
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/argoproj/argocd-example-apps.git": "argoproj/argocd-example-apps",
		"git@github.com:org/repo.git":                         "org/repo",
		"ssh://git@gitlab.example.com/group/sub/project":      "group/sub/project",
		"https://charts.bitnami.com/bitnami":                  "",
		"oci://ghcr.io":                                       "",
		"":                                                    "",
	} {
		if got := repoPath(in); got != want {
			t.Errorf("repoPath(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1": "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
		"main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1":      "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
		"sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1":      "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
		"latest@sha256:" + strings.Repeat("ab", 32):          "",
		"6.5.4": "",
	} {
		if got := fluxCommit(in); got != want {
			t.Errorf("fluxCommit(%q) = %q, want %q", in, got, want)
		}
	}
	m, err := ParseRepoMap(" Octo/Web = web-frontend ,octo/api=api,")
	if err != nil || m["octo/web"] != "web-frontend" || m["octo/api"] != "api" || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"octo/web", "web=frontend", "octo/web="} {
		if _, err := ParseRepoMap(bad); err == nil {
			t.Errorf("ParseRepoMap(%q) accepted", bad)
		}
	}
}

// Fuzz targets, one per vendor: no input panics, and whatever parses
// holds the invariants above. Seeds live in testdata/fuzz.
func FuzzFromGitHub(f *testing.F) {
	f.Add("deployment_status", []byte(`{"deployment_status":{"state":"success","updated_at":"2019-05-15T15:20:55Z"},"deployment":{"id":1,"sha":"f95f852bd8fca8fcc58a9a2d6c842781e32a215e","ref":"main","environment":"production","payload":{}},"repository":{"name":"r","full_name":"o/r"}}`))
	f.Add("push", []byte(`{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","commits":[{"id":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","timestamp":"2019-05-15T15:19:25Z"}],"repository":{"full_name":"o/r"}}`))
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		if dl, err := FromGitHub(event, body, githubConfig); err == nil {
			checkDelivery(t, dl)
		}
	})
}

func FuzzFromGitLab(f *testing.F) {
	f.Add([]byte(`{"object_kind":"deployment","status":"success","status_changed_at":"2021-04-28 21:50:00 +0200","environment":"staging","project":{"path_with_namespace":"g/p"},"short_sha":"279484c0"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if dl, err := FromGitLab(body, gitlabConfig); err == nil {
			checkDelivery(t, dl)
		}
	})
}

func FuzzFromArgoCD(f *testing.F) {
	f.Add([]byte(`{"app":"guestbook","namespace":"guestbook","phase":"Succeeded","revision":"53e28ff20cc530b9ada2173fbbd64d48338583ba","finished_at":"2024-05-06T14:21:37Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if dl, err := FromArgoCD(body); err == nil {
			checkDelivery(t, dl)
		}
	})
}

func FuzzFromFlux(f *testing.F) {
	f.Add([]byte(`{"involvedObject":{"kind":"Kustomization","name":"webapp","namespace":"apps"},"metadata":{"revision":"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},"severity":"info","reason":"ReconciliationSucceeded","timestamp":"2022-10-28T07:26:19Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if dl, err := FromFlux(body); err == nil {
			checkDelivery(t, dl)
			if dl.Deploy != nil && dl.Deploy.Commit != "" && !isSHA(dl.Deploy.Commit) {
				t.Fatalf("commit %q", dl.Deploy.Commit)
			}
		}
	})
}

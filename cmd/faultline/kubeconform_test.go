package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// tool returns the path a make variable exports for a test tool (bin/helm,
// bin/kubeconform, the schema directory), failing the test when it is not
// set: make test sets them and builds what they name.
func tool(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run the tests with make test, which installs the deployment tools (make kubetools)", env)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v (make kubetools builds it)", env, err)
	}
	return p
}

// kubeconform validates Kubernetes manifests in strict mode (a field the
// schema does not declare is an error) against the schemas make writes
// under .cache from the pinned Kubernetes release's OpenAPI document. It
// returns kubeconform's report and whether every resource is valid; a
// manifest that names a kind without a schema is not.
func kubeconform(t *testing.T, manifests []byte) (report string, valid bool) {
	t.Helper()
	bin := tool(t, "FAULTLINE_KUBECONFORM_BIN")
	schemas := tool(t, "FAULTLINE_KUBE_SCHEMA")
	version := os.Getenv("FAULTLINE_KUBERNETES_VERSION")
	cmd := exec.Command(bin, "-strict", "-summary", "-schema-location", schemas, "-kubernetes-version", version, "-")
	cmd.Stdin = bytes.NewReader(manifests)
	out, err := cmd.CombinedOutput()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatalf("kubeconform: %v", err)
	}
	return string(out), err == nil && strings.Contains(string(out), "Invalid: 0, Errors: 0, Skipped: 0")
}

// TestKubeconform: deploy/kubernetes/faultline.yaml is valid Kubernetes,
// field by field, and the check catches what a reader would miss: a
// misspelt field, a number given as a string, a field at the wrong level.
func TestKubeconform(t *testing.T) {
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if report, ok := kubeconform(t, raw); !ok {
		t.Fatalf("deploy/kubernetes/faultline.yaml:\n%s", report)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"misspelt field", "readinessProbe:", "readinesProbe:", "'readinesProbe' not allowed"},
		{"string for an integer", "replicas: 2", `replicas: "2"`, "/spec/replicas"},
		{"misspelt metadata", "metadata:\n  name: faultline-gateway", "metdata:\n  name: faultline-gateway", "'metdata' not allowed"},
		{"field at the wrong level", "      terminationGracePeriodSeconds: 60", "      terminationGracePeriodSeconds: 60\n      replicas: 3", "'replicas' not allowed"},
		{"unknown kind", "kind: Job", "kind: Jobb", "could not find schema for Jobb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(raw, []byte(tc.from)) {
				t.Fatalf("the manifest no longer holds %q", tc.from)
			}
			broken := bytes.Replace(raw, []byte(tc.from), []byte(tc.to), 1)
			report, ok := kubeconform(t, broken)
			if ok || !strings.Contains(report, tc.want) {
				t.Fatalf("kubeconform passed or missed %q:\n%s", tc.want, report)
			}
		})
	}
}

package main

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const chartPath = "../../deploy/helm/faultline"

// helm runs bin/helm and returns its output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "FAULTLINE_HELM_BIN"), args...)
	// No repositories, plugins or caches of the machine's user.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rendered is a chart's output, by kind.
type rendered struct {
	configMaps, secrets map[string]map[string]string
	pods                []k8sObject // Deployments and Jobs
	objects             []k8sObject
}

func parseRendered(t *testing.T, out string) rendered {
	t.Helper()
	r := rendered{configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{}}
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		var o k8sObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		switch o.Kind {
		case "":
			continue
		case "ConfigMap":
			r.configMaps[o.Metadata.Name] = o.Data
		case "Secret":
			data := map[string]string{}
			for k, v := range o.Data {
				b, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					t.Fatalf("Secret %s: key %s: %v", o.Metadata.Name, k, err)
				}
				data[k] = string(b)
			}
			r.secrets[o.Metadata.Name] = data
		case "Deployment", "Job":
			r.pods = append(r.pods, o)
		}
		r.objects = append(r.objects, o)
	}
	return r
}

func (r rendered) object(kind, name string) (k8sObject, bool) {
	i := slices.IndexFunc(r.objects, func(o k8sObject) bool { return o.Kind == kind && o.Metadata.Name == name })
	if i < 0 {
		return k8sObject{}, false
	}
	return r.objects[i], true
}

// TestHelmChart: deploy/helm/faultline lints, and what it renders, with the
// default values and with each values file under its ci/ directory, is
// valid Kubernetes (kubeconform, strict) whose every container would start:
// its environment, from the rendered ConfigMap and Secret and the files
// they mount, passes faultline check for its role, its listeners are
// reachable, it runs as non-root on a read-only root filesystem, and it is
// probed on /healthz and /readyz. A values file's header names the keys of
// a Secret it expects to exist, as the Kubernetes manifest's header does.
func TestHelmChart(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", chartPath); err != nil {
		t.Fatalf("helm lint:\n%s", out)
	}
	files, err := filepath.Glob(filepath.Join(chartPath, "ci", "*-values.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("values files under ci/: %v %v", files, err)
	}
	for _, values := range append([]string{""}, files...) {
		name := "defaults"
		args := []string{"template", "faultline", chartPath, "--namespace", "faultline"}
		if values != "" {
			name = filepath.Base(values)
			args = append(args, "--values", values)
		}
		t.Run(name, func(t *testing.T) {
			if values != "" {
				if out, err := helm(t, "lint", "--strict", chartPath, "--values", values); err != nil {
					t.Fatalf("helm lint:\n%s", out)
				}
			}
			out, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm template:\n%s", out)
			}
			if report, ok := kubeconform(t, []byte(out)); !ok {
				t.Fatalf("kubeconform:\n%s", report)
			}
			r := parseRendered(t, out)
			if values != "" {
				raw, err := os.ReadFile(values)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(raw), "secret generic") {
					for k, v := range headerSecrets(t, string(raw)) {
						r.secrets[k] = v
					}
				}
			}
			checkChart(t, r, name)
		})
	}
}

func checkChart(t *testing.T, r rendered, name string) {
	seen := map[string]int{}
	for _, o := range r.pods {
		spec := o.Spec.Template.Spec
		if spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
			t.Errorf("%s %s: not runAsNonRoot", o.Kind, o.Metadata.Name)
		}
		for _, c := range spec.Containers {
			if !strings.HasPrefix(c.Image, imageRepo+":v") {
				t.Errorf("%s: image %s, want %s at a release tag", o.Metadata.Name, c.Image, imageRepo)
			}
			sc := c.SecurityContext
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: root filesystem writable or privilege escalation allowed", o.Metadata.Name)
			}
			role, ok := checkContainer(t, o, c, r.configMaps, r.secrets)
			if !ok {
				continue
			}
			env := podEnv(t, &spec, c, r.configMaps, r.secrets)
			checkNATSUser(t, name, role, env)
			// Every long-running role schedules Go on its CPU request
			// (options-values.yaml's workers request 2).
			if o.Kind != "Job" {
				want := "1"
				if name == "options-values.yaml" && role == "worker" {
					want = "2"
				}
				if env["GOMAXPROCS"] != want {
					t.Errorf("%s: GOMAXPROCS %q, want %s (its CPU request)", o.Metadata.Name, env["GOMAXPROCS"], want)
				}
			}
			n := 1
			if o.Spec.Replicas != nil {
				n = *o.Spec.Replicas
			}
			seen[role] += n
			if o.Kind == "Job" {
				if o.Metadata.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" {
					t.Errorf("Job %s: hook %q, want pre-install,pre-upgrade", o.Metadata.Name, o.Metadata.Annotations["helm.sh/hook"])
				}
				continue
			}
			for p, want := range map[*probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port != "admin" {
					t.Errorf("%s: no probe on %s of the admin port", o.Metadata.Name, want)
				}
			}
		}
	}
	for _, role := range []string{"gateway", "worker", "correlator", "migrate"} {
		if seen[role] == 0 {
			t.Errorf("no faultline %s", role)
		}
	}
	if name == "defaults" {
		// A leader and a standby.
		if seen["correlator"] != 2 {
			t.Errorf("%d correlators, want 2", seen["correlator"])
		}
	}
	svc, ok := r.object("Service", "faultline-gateway")
	if !ok {
		t.Fatal("no Service faultline-gateway")
	}
	ports := map[string]int{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p.Port
	}
	if ports["otlp-http"] != 4318 || ports["otlp-grpc"] != 4317 {
		t.Errorf("gateway Service ports %v, want otlp-http 4318 and otlp-grpc 4317", ports)
	}
	for _, role := range []string{"gateway", "worker", "correlator"} {
		if _, ok := r.object("Service", "faultline-"+role+"-admin"); !ok {
			t.Errorf("no admin Service for the %s", role)
		}
	}
	_, monitored := r.object("ServiceMonitor", "faultline")
	if want := name == "options-values.yaml"; monitored != want {
		t.Errorf("ServiceMonitor rendered: %v, want %v", monitored, want)
	}
}

// TestHelmChartRefuses: values that would stop every pod at start fail at
// helm template, with a message naming the value to set.
func TestHelmChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"webhook.url=https://alerts.example.com"}, "secret.webhookSecret"},
		{[]string{"nats.creds=true"}, "secret.natsCreds"},
		{[]string{"clickhouse.tlsCA=true"}, "secret.clickhouseCA"},
		{[]string{"nats.url="}, "nats.url"},
		{[]string{"clickhouse.addr="}, "clickhouse.addr"},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			args := []string{"template", "faultline", chartPath}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := helm(t, args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("helm template %v: err %v, want a failure naming %s:\n%s", tc.set, err, tc.want, out)
			}
		})
	}
}

// checkNATSUser checks that each role connects to NATS as the values file
// says: a user of its own per role, or a credentials file of its own.
func checkNATSUser(t *testing.T, values, role string, env map[string]string) {
	t.Helper()
	if role == "migrate" {
		return
	}
	switch values {
	case "role-users-values.yaml":
		if env["FAULTLINE_NATS_USER"] != role || env["FAULTLINE_NATS_PASSWORD"] != role+"-secret" {
			t.Errorf("%s connects as %q/%q, want its own user", role, env["FAULTLINE_NATS_USER"], env["FAULTLINE_NATS_PASSWORD"])
		}
	case "existing-secret-values.yaml":
		want := "/etc/faultline/secret/nats.creds"
		if role == "correlator" {
			want = "/etc/faultline/role/nats.creds"
		}
		if !strings.HasSuffix(env["FAULTLINE_NATS_CREDS"], want) || env["FAULTLINE_NATS_USER"] != "" {
			t.Errorf("%s connects with %q (user %q), want the credentials file %s", role, env["FAULTLINE_NATS_CREDS"], env["FAULTLINE_NATS_USER"], want)
		}
	}
}

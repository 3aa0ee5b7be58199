package main

import (
	"bufio"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const manifestPath = "../../deploy/kubernetes/faultline.yaml"

// imageRepo is where .github/workflows/image.yml pushes the image.
const imageRepo = "ghcr.io/faultline-dev/faultline"

// The parts of Kubernetes objects the manifest test reads.
type k8sObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
	Spec struct {
		Replicas *int `json:"replicas"`
		Strategy struct {
			Type string `json:"type"`
		} `json:"strategy"`
		Template struct {
			Spec podSpec `json:"spec"`
		} `json:"template"`
		Ports []struct { // of a Service
			Name string `json:"name"`
			Port int    `json:"port"`
		} `json:"ports"`
	} `json:"spec"`
}

type podSpec struct {
	Containers      []container `json:"containers"`
	Volumes         []volume    `json:"volumes"`
	SecurityContext struct {
		RunAsNonRoot *bool `json:"runAsNonRoot"`
	} `json:"securityContext"`
}

type volume struct {
	Name   string `json:"name"`
	Secret *struct {
		SecretName string       `json:"secretName"`
		Items      []secretItem `json:"items"`
	} `json:"secret"`
}

type secretItem struct {
	Key  string `json:"key"`
	Path string `json:"path"`
}

type containerPort struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
}

type container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Args    []string `json:"args"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `json:"name"`
		} `json:"configMapRef"`
		SecretRef *struct {
			Name string `json:"name"`
		} `json:"secretRef"`
	} `json:"envFrom"`
	Env []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			ResourceFieldRef *struct {
				Resource string `json:"resource"`
				Divisor  string `json:"divisor"`
			} `json:"resourceFieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Resources struct {
		Requests map[string]string `json:"requests"`
	} `json:"resources"`
	Ports           []containerPort `json:"ports"`
	ReadinessProbe  *probe          `json:"readinessProbe"`
	LivenessProbe   *probe          `json:"livenessProbe"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

// TestManifest starts nothing but does what each container of
// deploy/kubernetes/faultline.yaml does first: it reads the environment
// Kubernetes would give it (the ConfigMap, the Secrets its header creates,
// the container's own env, the files its volumes mount) and validates the
// settings of its role. A manifest whose pods would stop at start fails
// here. It also checks that listeners bind every interface on a declared
// port and that every container runs the same published, pinned image.
func TestManifest(t *testing.T) {
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	secrets := headerSecrets(t, string(raw))
	configMaps := map[string]map[string]string{}
	var pods []k8sObject
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		var o k8sObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o.Data
		case "Deployment", "Job":
			pods = append(pods, o)
		}
	}
	if len(pods) == 0 {
		t.Fatal("no Deployment or Job in the manifest")
	}

	seen := map[string]bool{}
	var image string
	for _, o := range pods {
		for _, c := range o.Spec.Template.Spec.Containers {
			name := o.Kind + " " + o.Metadata.Name
			// One correlator leads while the other stands by, and a
			// rolling update hands the lease over.
			if len(c.Args) > 0 && c.Args[0] == "correlator" && (o.Spec.Replicas == nil || *o.Spec.Replicas < 2 || o.Spec.Strategy.Type == "Recreate") {
				t.Errorf("%s: replicas %v, strategy %q: want two or more, rolling", name, o.Spec.Replicas, o.Spec.Strategy.Type)
			}
			if image == "" {
				image = c.Image
			}
			if c.Image != image {
				t.Errorf("%s: image %s, others run %s", name, c.Image, image)
			}
			if r, ok := checkContainer(t, o, c, configMaps, secrets); ok {
				seen[r] = true
			}
		}
	}
	for _, r := range []string{"gateway", "worker", "correlator", "migrate"} {
		if !seen[r] {
			t.Errorf("the manifest runs no faultline %s", r)
		}
	}
	repo, tag, _ := strings.Cut(image, ":")
	if repo != imageRepo || tag == "" || tag == "latest" {
		t.Errorf("image %q: want %s at a pinned release tag", image, imageRepo)
	}
}

// checkContainer does what container c of pod object o does first: it
// reads the environment Kubernetes would give it and validates its role's
// settings as faultline check does. It checks that its listeners bind
// every interface on a declared port, and reports the role.
func checkContainer(t *testing.T, o k8sObject, c container, configMaps, secrets map[string]map[string]string) (string, bool) {
	t.Helper()
	name := o.Kind + " " + o.Metadata.Name
	if len(c.Args) == 0 {
		t.Errorf("%s: no command: the image's default is faultline run, not a role of a deployment", name)
		return "", false
	}
	r, ok := roles[c.Args[0]]
	if !ok || r.local {
		t.Errorf("%s: %q is not a role that joins a deployment", name, c.Args[0])
		return "", false
	}
	t.Run(o.Metadata.Name, func(t *testing.T) {
		env := podEnv(t, &o.Spec.Template.Spec, c, configMaps, secrets)
		clearEnv(t)
		for k, v := range env {
			t.Setenv(k, v)
		}
		// A web UI on loopback is a choice: kubectl port-forward reaches it.
		for v, addr := range checkedListeners(t, r, "in the pod", true) {
			host, port, _ := net.SplitHostPort(addr)
			if host != "" && host != "0.0.0.0" && host != "::" {
				t.Errorf("%s=%s: binds %s only, unreachable from outside the pod", v, addr, host)
			}
			n, _ := strconv.Atoi(port)
			if !slices.ContainsFunc(c.Ports, func(p containerPort) bool { return p.ContainerPort == n }) {
				t.Errorf("%s=%s: port %s is not a containerPort", v, addr, port)
			}
		}
	})
	return r.name, true
}

// checkedListeners runs faultline check for role r under the test's
// environment, failing the test if the role would stop at start (where),
// and returns the addresses it would listen on by setting: none for a role
// that needs no NATS, and a web UI bound to loopback left out when
// loopbackUI allows it.
func checkedListeners(t *testing.T, r role, where string, loopbackUI bool) map[string]string {
	t.Helper()
	var out strings.Builder
	if err := run([]string{"check", r.name}, &out); err != nil {
		t.Fatalf("faultline %s %s would stop at start: %v", r.name, where, err)
	}
	cfg, err := loadConfig(r)
	if err != nil {
		t.Fatal(err)
	}
	if !r.needNATS {
		return nil
	}
	listeners := map[string]string{"FAULTLINE_ADMIN_LISTEN": cfg.AdminListen}
	if r.gateway {
		listeners["FAULTLINE_GATEWAY_LISTEN"] = cfg.Gateway.Listen
		listeners["FAULTLINE_GATEWAY_GRPC_LISTEN"] = cfg.Gateway.GRPCListen
	}
	if r.ui {
		if host, _, _ := net.SplitHostPort(cfg.UI.Listen); !loopbackUI || (cfg.UI.Listen != "" && host != "127.0.0.1") {
			listeners["FAULTLINE_UI_LISTEN"] = cfg.UI.Listen
		}
	}
	return listeners
}

// headerSecrets reads the Secrets the manifest's header tells operators to
// create (kubectl create secret generic NAME --from-literal=K=V
// --from-file=K=path), with placeholder values.
func headerSecrets(t *testing.T, manifest string) map[string]map[string]string {
	t.Helper()
	secrets := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(strings.NewReader(manifest))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "#")
		if !ok {
			break // the header ends at the first object
		}
		fields := strings.Fields(line)
		if i := slices.Index(fields, "generic"); i >= 0 && i+1 < len(fields) {
			cur = map[string]string{}
			secrets[fields[i+1]] = cur
		}
		for _, f := range fields {
			kv, ok := strings.CutPrefix(f, "--from-literal=")
			if !ok {
				kv, ok = strings.CutPrefix(f, "--from-file=")
			}
			if k, _, found := strings.Cut(kv, "="); ok && found && cur != nil {
				cur[k] = "placeholder-" + strings.ToLower(k)
			}
		}
		if !strings.HasSuffix(strings.TrimSpace(line), `\`) {
			cur = nil
		}
	}
	if len(secrets) == 0 {
		t.Fatal("the manifest's header creates no secret")
	}
	return secrets
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// podEnv is the environment Kubernetes gives container c: envFrom sources
// in order (keys that are not variable names skipped), then env. Secret
// volumes are written under a temporary directory, and values naming a
// file under a mount point are pointed there, so a setting naming a file
// the pod does not mount fails as it would in the cluster.
func podEnv(t *testing.T, spec *podSpec, c container, configMaps, secrets map[string]map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		var data map[string]string
		var ok bool
		switch {
		case from.ConfigMapRef != nil:
			data, ok = configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Fatalf("container %s: ConfigMap %q is not in the manifest", c.Name, from.ConfigMapRef.Name)
			}
		case from.SecretRef != nil:
			data, ok = secrets[from.SecretRef.Name]
			if !ok {
				t.Fatalf("container %s: Secret %q is not created by the header's commands", c.Name, from.SecretRef.Name)
			}
		}
		for k, v := range data {
			if envName.MatchString(k) {
				env[k] = v
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			env[e.Name] = resourceField(t, c, e.Name, e.ValueFrom.ResourceFieldRef)
			continue
		}
		env[e.Name] = e.Value
	}
	root := t.TempDir()
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(spec.Volumes, func(v volume) bool { return v.Name == m.Name })
		if i < 0 {
			t.Fatalf("container %s: volume %q is not in the pod", c.Name, m.Name)
		}
		v := spec.Volumes[i]
		if v.Secret == nil {
			continue
		}
		data, ok := secrets[v.Secret.SecretName]
		if !ok {
			t.Fatalf("volume %s: Secret %q is not created by the header's commands", v.Name, v.Secret.SecretName)
		}
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		items := v.Secret.Items
		if len(items) == 0 { // the whole Secret, a file per key
			for k := range data {
				items = append(items, secretItem{Key: k, Path: k})
			}
		}
		for _, it := range items {
			val, ok := data[it.Key]
			if !ok {
				t.Fatalf("volume %s: Secret %s has no key %q", v.Name, v.Secret.SecretName, it.Key)
			}
			if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(val), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for k, val := range env {
			if strings.HasPrefix(val, strings.TrimSuffix(m.MountPath, "/")+"/") {
				env[k] = filepath.Join(root, val)
			}
		}
	}
	return env
}

// resourceField is what Kubernetes puts in variable name from ref: only
// the CPU request in whole CPUs, rounded up, is read here (GOMAXPROCS).
func resourceField(t *testing.T, c container, name string, ref *struct {
	Resource string `json:"resource"`
	Divisor  string `json:"divisor"`
}) string {
	t.Helper()
	if ref == nil || ref.Resource != "requests.cpu" || (ref.Divisor != "" && ref.Divisor != "1") {
		t.Fatalf("container %s: %s takes a value this test does not read (only resourceFieldRef requests.cpu)", c.Name, name)
	}
	q, ok := c.Resources.Requests["cpu"]
	if !ok {
		t.Fatalf("container %s: %s reads the CPU request, and the container has none", c.Name, name)
	}
	var cpus float64
	var err error
	if m, ok := strings.CutSuffix(q, "m"); ok {
		cpus, err = strconv.ParseFloat(m, 64)
		cpus /= 1000
	} else {
		cpus, err = strconv.ParseFloat(q, 64)
	}
	if err != nil || cpus <= 0 {
		t.Fatalf("container %s: CPU request %q", c.Name, q)
	}
	return strconv.Itoa(int(math.Ceil(cpus)))
}

// clearEnv unsets every FAULTLINE_ variable of the test's own environment
// (the Makefile exports some) until the test ends.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, envPrefix+"_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestFileName(t *testing.T) {
	for _, tc := range []struct{ group, version, kind, want string }{
		{"", "v1", "Service", "service-v1.json"},
		{"apps", "v1", "Deployment", "deployment-apps-v1.json"},
		{"monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitor-monitoring-v1.json"},
		{"rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterrole-rbac-v1.json"},
	} {
		if got := fileName(tc.group, tc.version, tc.kind); got != tc.want {
			t.Errorf("fileName(%q, %q, %q) = %q, want %q", tc.group, tc.version, tc.kind, got, tc.want)
		}
	}
}

// TestConvert: references are inlined (a cycle becomes the empty schema),
// objects with properties are closed, optional properties take null,
// int-or-string and quantities take numbers, descriptions and extensions
// go.
func TestConvert(t *testing.T) {
	defs := map[string]map[string]any{}
	if err := json.Unmarshal([]byte(`{
		"x.Kind": {"type": "object", "description": "d", "x-kubernetes-group-version-kind": [{"group": "g.io", "version": "v1", "kind": "Kind"}],
			"required": ["spec"],
			"properties": {"spec": {"$ref": "#/definitions/x.Spec"}, "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}}},
		"x.Spec": {"type": "object", "properties": {
			"cpu": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
			"self": {"$ref": "#/definitions/x.Spec"},
			"labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
		"io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
		"io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"}
	}`), &defs); err != nil {
		t.Fatal(err)
	}
	c := converter{defs: defs}
	got, _ := json.Marshal(c.convert(defs["x.Kind"], []string{"x.Kind"}))
	want := `{"additionalProperties":false,"properties":{` +
		`"port":{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]},` +
		`"spec":{"additionalProperties":false,"properties":{` +
		`"cpu":{"oneOf":[{"type":"string"},{"type":"number"},{"type":"null"}]},` +
		`"labels":{"additionalProperties":{"type":"string"},"type":["object","null"]},` +
		`"self":{}},"type":"object"}},"required":["spec"],"type":"object"}`
	if string(got) != want {
		t.Fatalf("convert:\n%s\nwant:\n%s", got, want)
	}
}

// TestRun writes the schemas of a small OpenAPI document in kubeconform's
// layout, and refuses a document without definitions.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "swagger.json")
	doc := `{"definitions": {"io.k8s.api.core.v1.Service": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Service"}], "properties": {"kind": {"type": "string"}}}}}`
	if err := os.WriteFile(spec, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "schemas")
	if err := run([]string{"-spec", spec, "-out", out, "-version", "1.34.4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "v1.34.4-standalone-strict", "service-v1.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec, []byte(`{"swagger": "2.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-spec", spec, "-out", out, "-version", "1.34.4"}); err == nil {
		t.Fatal("a document without definitions was accepted")
	}
}

// Command faultline-kubeschema writes the JSON schemas kubeconform validates
// Kubernetes manifests against, from the OpenAPI document Kubernetes ships
// (api/openapi-spec/swagger.json in the k8s.io/kubernetes module) and from
// CustomResourceDefinitions. kubeconform downloads such schemas from GitHub
// by default; make builds them here instead, pinned to one Kubernetes
// release, in kubeconform's own layout:
//
//	OUT/vVERSION-standalone-strict/KIND[-GROUP]-VERSION.json
//
// (GROUP is the first label of the API group; none for the core group), so
// that `kubeconform -schema-location OUT -kubernetes-version VERSION
// -strict` finds them. Each schema is standalone (every $ref inlined) and
// strict: an object with declared properties takes no other, so a
// misspelt field is an error, as kubectl's server-side validation makes
// it. Optional fields may be null, as the API server accepts.
//
// Usage:
//
//	faultline-kubeschema -spec swagger.json [-crd crds.yaml]... -out DIR -version 1.34.4
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "faultline-kubeschema:", err)
		os.Exit(1)
	}
}

// files collects a repeatable flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func run(args []string) error {
	fs := flag.NewFlagSet("faultline-kubeschema", flag.ContinueOnError)
	spec := fs.String("spec", "", "the Kubernetes OpenAPI v2 document (api/openapi-spec/swagger.json)")
	out := fs.String("out", "", "the schema directory kubeconform's -schema-location names")
	version := fs.String("version", "", "the Kubernetes version the document is of, e.g. 1.34.4")
	var crds files
	fs.Var(&crds, "crd", "a YAML file of CustomResourceDefinitions whose schemas to write too (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *spec == "" || *out == "" || *version == "" {
		return errors.New("-spec, -out and -version are required")
	}
	schemas, err := fromSwagger(*spec)
	if err != nil {
		return err
	}
	for _, path := range crds {
		s, err := fromCRDs(path)
		if err != nil {
			return err
		}
		for k, v := range s {
			schemas[k] = v
		}
	}
	dir := filepath.Join(*out, "v"+strings.TrimPrefix(*version, "v")+"-standalone-strict")
	// Written beside the final directory and renamed into place, so an
	// interrupted run leaves no half set that make would take as done.
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	for name, s := range schemas {
		b, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	fmt.Printf("%d schemas in %s\n", len(schemas), dir)
	return nil
}

// fileName is where kubeconform looks for the schema of a kind (its
// registry's {{ .ResourceKind }}{{ .KindSuffix }}.json).
func fileName(group, version, kind string) string {
	name := strings.ToLower(kind)
	if group != "" {
		name += "-" + strings.ToLower(strings.Split(group, ".")[0])
	}
	return name + "-" + strings.ToLower(version) + ".json"
}

type gvk struct{ Group, Version, Kind string }

// fromSwagger converts every definition of the OpenAPI v2 document that is
// a top-level kind (it carries x-kubernetes-group-version-kind).
func fromSwagger(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Definitions) == 0 {
		return nil, fmt.Errorf("%s: no definitions: not an OpenAPI v2 document", path)
	}
	c := converter{defs: doc.Definitions}
	out := map[string]any{}
	names := make([]string, 0, len(doc.Definitions))
	for name := range doc.Definitions {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		def := doc.Definitions[name]
		raw, ok := def["x-kubernetes-group-version-kind"]
		if !ok {
			continue
		}
		var kinds []gvk
		if err := remarshal(raw, &kinds); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, k := range kinds {
			// Shared types (DeleteOptions, WatchEvent) name every group;
			// only a definition of the kind's own group and version is
			// that kind's schema.
			if !strings.HasSuffix(name, "."+k.Version+"."+k.Kind) {
				continue
			}
			file := fileName(k.Group, k.Version, k.Kind)
			if _, dup := out[file]; !dup {
				out[file] = c.convert(def, []string{name})
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no kinds", path)
	}
	return out, nil
}

// fromCRDs converts the openAPIV3Schema of every version of the
// CustomResourceDefinitions in a YAML file.
func fromCRDs(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		var crd struct {
			Kind string `json:"kind"`
			Spec struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Versions []struct {
					Name   string `json:"name"`
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					} `json:"schema"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			c := converter{}
			out[fileName(crd.Spec.Group, v.Name, crd.Spec.Names.Kind)] = c.convert(v.Schema.OpenAPIV3Schema, nil)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no CustomResourceDefinition with a schema", path)
	}
	return out, nil
}

func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// converter turns OpenAPI schemas into standalone, strict JSON schemas.
type converter struct {
	defs map[string]map[string]any
}

const refPrefix = "#/definitions/"

// convert returns a copy of schema with references inlined (a reference
// back to a definition being inlined, as in JSONSchemaProps, becomes the
// empty schema: anything), descriptions and OpenAPI extensions dropped,
// int-or-string and quantities accepting numbers, objects with declared
// properties closed, and optional properties nullable.
func (c *converter) convert(schema map[string]any, stack []string) map[string]any {
	if ref, ok := schema["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, refPrefix)
		def, found := c.defs[name]
		if !found || slices.Contains(stack, name) {
			return map[string]any{}
		}
		return c.convert(def, append(stack, name))
	}
	if schema["format"] == "int-or-string" || schema["x-kubernetes-int-or-string"] == true {
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	}
	if len(stack) > 0 && stack[len(stack)-1] == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
	out := map[string]any{}
	for k, v := range schema {
		switch {
		case k == "description" || k == "format" || k == "example" || strings.HasPrefix(k, "x-"):
			continue
		case k == "properties":
			props := map[string]any{}
			required, _ := schema["required"].([]any)
			for name, p := range v.(map[string]any) {
				ps := c.convert(p.(map[string]any), stack)
				if !slices.Contains(required, any(name)) {
					ps = nullable(ps)
				}
				props[name] = ps
			}
			out[k] = props
		case k == "items" || k == "not":
			if m, ok := v.(map[string]any); ok {
				out[k] = c.convert(m, stack)
			} else {
				out[k] = v
			}
		case k == "additionalProperties":
			if m, ok := v.(map[string]any); ok {
				out[k] = c.convert(m, stack)
			} else {
				out[k] = v
			}
		case k == "allOf" || k == "anyOf" || k == "oneOf":
			var list []any
			for _, s := range v.([]any) {
				list = append(list, c.convert(s.(map[string]any), stack))
			}
			out[k] = list
		default:
			out[k] = v
		}
	}
	if _, ok := out["properties"]; ok {
		if _, set := out["additionalProperties"]; !set {
			out["additionalProperties"] = false
		}
	}
	return out
}

// nullable lets an optional property be null.
func nullable(s map[string]any) map[string]any {
	switch t := s["type"].(type) {
	case string:
		s["type"] = []any{t, "null"}
	case nil:
		if list, ok := s["oneOf"].([]any); ok {
			s["oneOf"] = append(list, map[string]any{"type": "null"})
		}
	}
	return s
}

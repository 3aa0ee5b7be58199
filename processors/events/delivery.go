package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Delivery is what one CI/CD webhook delivery (GitHub, GitLab, Argo CD,
// Flux) means to faultline: a deploy, a push whose commits later give the
// deploys that ship them a lead time, or nothing, with the reason.
type Delivery struct {
	Deploy *Deploy `json:"deploy,omitempty"`
	Push   *Push   `json:"push,omitempty"`
	// Ignored says why a well-formed delivery records nothing.
	Ignored string `json:"ignored,omitempty"`
	// Repository ("owner/name") holds Deploy.Commit when it is a full sha,
	// so the commits the deploy shipped can be looked up from pushes.
	Repository string `json:"repository,omitempty"`
	// Object is the Flux object a deploy is about ("Kustomization/apps/web").
	// Flux reports every reconciliation; only a revision the object has not
	// reported yet is a deploy, which the gateway decides from Revision.
	Object   string `json:"object,omitempty"`
	Revision string `json:"revision,omitempty"`
}

// Push is a branch moving from Before to After, bringing Commits.
type Push struct {
	Repository string   `json:"repository"`
	Ref        string   `json:"ref"`
	Before     string   `json:"before"`
	After      string   `json:"after"`
	Forced     bool     `json:"forced,omitempty"`
	Commits    []Commit `json:"commits"`
}

// ParseServiceMap reads "PF9KMXH=checkout,API Service=api": comma-separated
// name=service pairs, both sides trimmed and required, services no longer
// than a field may be.
func ParseServiceMap(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not name=service", strings.TrimSpace(pair))
		}
		if len(v) > maxFieldLen {
			return nil, fmt.Errorf("service of %s longer than %d bytes", k, maxFieldLen)
		}
		m[k] = v
	}
	return m, nil
}

// ParseRepoMap reads "owner/repo=service,owner/other=svc2" (a ServiceMap
// of repository paths) keyed by the lower-cased path: GitHub and GitLab
// paths are case insensitive.
func ParseRepoMap(s string) (map[string]string, error) {
	m, err := ParseServiceMap(s)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(m))
	for repo, svc := range m {
		if !strings.Contains(repo, "/") {
			return nil, fmt.Errorf("%q is not owner/repo=service", repo+"="+svc)
		}
		out[strings.ToLower(repo)] = svc
	}
	return out, nil
}

// decodeObject unmarshals a webhook body, turning JSON errors into field
// errors: a value of the wrong type names its path.
func decodeObject(body []byte, v any) error {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return &FieldError{Field: "(body)", Msg: "must be a JSON object"}
	}
	err := json.Unmarshal(b, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		return &FieldError{Field: field, Msg: fmt.Sprintf("must be %s, not %s", jsonKind(te.Type), te.Value)}
	}
	return &FieldError{Field: "(body)", Msg: "invalid JSON: " + err.Error()}
}

func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}

// text checks one string taken from a vendor payload: trimmed, present
// when required, and no longer than any native field may be.
func text(name, s string, required bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" && required {
		return "", &FieldError{Field: name, Msg: "is required"}
	}
	if len(s) > maxFieldLen {
		return "", &FieldError{Field: name, Msg: fmt.Sprintf("longer than %d bytes", maxFieldLen)}
	}
	return s, nil
}

// vendorLayouts are the time formats vendors use: RFC 3339 (GitHub, Flux,
// Argo CD) and Ruby's Time#to_s (GitLab's "2021-04-28 21:50:00 +0200").
var vendorLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05 -0700", "2006-01-02 15:04:05 MST"}

func vendorTime(name, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, &FieldError{Field: name, Msg: "is required"}
	}
	for _, layout := range vendorLayouts {
		t, err := time.Parse(layout, s)
		if err != nil {
			continue
		}
		if t.Year() < 1970 || t.Year() > 2200 {
			return time.Time{}, &FieldError{Field: name, Msg: fmt.Sprintf("%.64q is out of range", s)}
		}
		return t.UTC(), nil
	}
	return time.Time{}, &FieldError{Field: name, Msg: fmt.Sprintf("%.64q is not a time (2026-11-01T10:00:00Z)", s)}
}

// isSHA reports whether s is a full git object name (SHA-1 or SHA-256).
func isSHA(s string) bool {
	return (len(s) == 40 || len(s) == 64) && isHex(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return s != ""
}

// zeroSHA is how GitHub and GitLab write "no commit" (a branch created or
// deleted).
func zeroSHA(s string) bool { return s != "" && strings.Trim(s, "0") == "" }

// shortSHA is the version faultline gives a deploy known only by its
// commit: the first 12 hex digits, as git abbreviates in large repositories.
func shortSHA(s string) string {
	if len(s) > 12 {
		return strings.ToLower(s[:12])
	}
	return strings.ToLower(s)
}

var versionTag = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+)+([-+][0-9A-Za-z.+-]*)?$`)

// tagVersion returns the tag a ref names, when it names one: refs/tags/X,
// or a ref that reads as a version (v1.2.3, 2026.11.1). Branch names are
// not versions; a deploy of a branch is known by its commit.
func tagVersion(ref string) (string, bool) {
	if t, ok := strings.CutPrefix(ref, "refs/tags/"); ok && t != "" {
		return t, true
	}
	if versionTag.MatchString(ref) {
		return ref, true
	}
	return "", false
}

// repoPath turns a clone URL (https://github.com/org/repo.git,
// git@github.com:org/repo.git, ssh://git@host/group/sub/project) into the
// repository path pushes are recorded under ("org/repo").
func repoPath(u string) string {
	u = strings.TrimSpace(u)
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
		if j := strings.Index(u, "/"); j >= 0 {
			u = u[j+1:]
		} else {
			return ""
		}
	} else if i := strings.Index(u, ":"); i >= 0 && strings.Contains(u[:i], "@") {
		u = u[i+1:]
	} else {
		return ""
	}
	u = strings.TrimSuffix(strings.TrimSuffix(u, "/"), ".git")
	if !strings.Contains(u, "/") {
		return ""
	}
	return u
}

// finish derives a vendor deploy's id from its content, so a delivery the
// vendor repeats becomes the same deploy and the same JetStream message id.
func finish(d *Deploy) *Deploy {
	if len(d.Attributes) == 0 {
		d.Attributes = nil
	}
	d.ID = DeployID(*d)
	return d
}

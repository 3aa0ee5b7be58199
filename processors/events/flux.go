package events

import (
	"fmt"
	"slices"
	"strings"
)

// fluxEvent is the body of Flux's notification-controller generic and
// generic-hmac providers: the Event of fluxcd/pkg/apis/event/v1.
type fluxEvent struct {
	InvolvedObject struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"involvedObject"`
	Severity            string            `json:"severity"`
	Timestamp           string            `json:"timestamp"`
	Reason              string            `json:"reason"`
	Metadata            map[string]string `json:"metadata"`
	ReportingController string            `json:"reportingController"`
}

// FromFlux reads one Flux event. A Kustomization's ReconciliationSucceeded
// is a succeeded deploy of its revision and an error event carrying a
// revision a failed one; Flux reports the same revision at every
// reconciliation, so the Delivery names the Object and Revision and the
// gateway records only a revision the object has not reported yet. A
// HelmRelease's InstallSucceeded and UpgradeSucceeded are deploys (Helm
// acts only on a change), RollbackSucceeded a rollback, InstallFailed and
// UpgradeFailed failed deploys. Everything else is ignored.
//
// The service is the object's name and the environment its namespace,
// unless the Alert's spec.eventMetadata sets "service" or "environment".
func FromFlux(body []byte) (Delivery, error) {
	var e fluxEvent
	if err := decodeObject(body, &e); err != nil {
		return Delivery{}, err
	}
	kind, err := text("involvedObject.kind", e.InvolvedObject.Kind, true)
	if err != nil {
		return Delivery{}, err
	}
	name, err := text("involvedObject.name", e.InvolvedObject.Name, true)
	if err != nil {
		return Delivery{}, err
	}
	ns, err := text("involvedObject.namespace", e.InvolvedObject.Namespace, false)
	if err != nil {
		return Delivery{}, err
	}
	switch e.Severity {
	case "info", "error":
	case "trace":
		return Delivery{Ignored: "trace event"}, nil
	case "":
		return Delivery{}, &FieldError{Field: "severity", Msg: "is required"}
	default:
		return Delivery{}, &FieldError{Field: "severity", Msg: fmt.Sprintf("%.32q is not info, error or trace", e.Severity)}
	}
	revision, err := text("metadata.revision", fluxMeta(e.Metadata, "revision"), false)
	if err != nil {
		return Delivery{}, err
	}
	d := Deploy{Type: TypeDeploy}
	object := kind + "/" + ns + "/" + name
	switch kind {
	case "Kustomization":
		switch {
		case revision == "":
			return Delivery{Ignored: fmt.Sprintf("%.32s event without a revision", e.Reason)}, nil
		case e.Severity == "error":
			d.Status = StatusFailed
		case e.Reason == "ReconciliationSucceeded":
			d.Status = StatusSucceeded
		default:
			return Delivery{Ignored: fmt.Sprintf("Kustomization event %.32s", e.Reason)}, nil
		}
	case "HelmRelease":
		switch e.Reason {
		case "InstallSucceeded", "UpgradeSucceeded":
			d.Status = StatusSucceeded
		case "RollbackSucceeded":
			d.Status, d.Type = StatusSucceeded, TypeRollback
		case "InstallFailed", "UpgradeFailed":
			d.Status = StatusFailed
		default:
			return Delivery{Ignored: fmt.Sprintf("HelmRelease event %.32s", e.Reason)}, nil
		}
		if revision == "" {
			return Delivery{}, &FieldError{Field: "metadata.revision", Msg: "is required for a HelmRelease deploy"}
		}
	default:
		return Delivery{Ignored: fmt.Sprintf("%.32s events are not deploys", kind)}, nil
	}
	if d.Timestamp, err = vendorTime("timestamp", e.Timestamp); err != nil {
		return Delivery{}, err
	}
	if d.Service, err = text("metadata.service", firstNonEmpty(fluxMeta(e.Metadata, "service"), name), true); err != nil {
		return Delivery{}, err
	}
	if d.Environment, err = text("metadata.environment", firstNonEmpty(fluxMeta(e.Metadata, "environment"), ns), false); err != nil {
		return Delivery{}, err
	}
	if d.Environment == "" {
		return Delivery{}, &FieldError{Field: "involvedObject.namespace", Msg: "is required (or metadata.environment)"}
	}
	d.Version = revision
	if c := fluxCommit(revision); c != "" {
		d.Commit, d.Version = c, shortSHA(c)
	} else if c := fluxCommit(fluxMeta(e.Metadata, "originRevision")); c != "" {
		d.Commit = c
	}
	if kind == "HelmRelease" {
		if app, err := text("metadata.app-version", fluxMeta(e.Metadata, "app-version"), false); err != nil {
			return Delivery{}, err
		} else if app != "" {
			d.Version = app // what the release runs; the chart version is in the attributes
		}
	}
	reason, err := text("reason", e.Reason, false)
	if err != nil {
		return Delivery{}, err
	}
	controller, err := text("reportingController", e.ReportingController, false)
	if err != nil {
		return Delivery{}, err
	}
	d.Attributes = map[string]string{"flux.object": object, "flux.revision": revision, "flux.reason": reason}
	if controller != "" {
		d.Attributes["flux.controller"] = controller
	}
	dl := Delivery{Deploy: finish(&d)}
	if kind == "Kustomization" {
		dl.Object, dl.Revision = object, revision
	}
	return dl, nil
}

// fluxMeta reads a metadata key as notification-controller forwards it
// (since Flux 2.4 stripped of the object's API group) or as earlier
// versions did ("kustomize.toolkit.fluxcd.io/revision").
func fluxMeta(m map[string]string, key string) string {
	if v, ok := m[key]; ok {
		return strings.TrimSpace(v)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if strings.HasSuffix(k, "/"+key) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	return strings.TrimSpace(m[keys[0]])
}

// fluxCommit extracts the git commit from a Flux source revision:
// "main@sha1:<sha>", "sha1:<sha>" or the older "main/<sha>". OCI and
// bucket digests (sha256:...) are not commits.
func fluxCommit(rev string) string {
	if i := strings.LastIndex(rev, "@"); i >= 0 {
		rev = rev[i+1:]
	}
	if s, ok := strings.CutPrefix(rev, "sha1:"); ok {
		rev = s
	} else if i := strings.LastIndex(rev, "/"); i >= 0 {
		rev = rev[i+1:]
	}
	if len(rev) == 40 && isHex(rev) {
		return strings.ToLower(rev)
	}
	return ""
}

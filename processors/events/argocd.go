package events

import (
	"fmt"
	"strings"
)

// argoCDBody is the JSON faultline's Argo CD notification templates send
// (Argo CD notifications have no fixed body; the README has the
// argocd-notifications-cm that emits this one). Every value is a string
// filled by a Go template, which prints "<no value>" for a missing field.
type argoCDBody struct {
	App         string `json:"app"`         // .app.metadata.name
	Project     string `json:"project"`     // .app.spec.project
	Namespace   string `json:"namespace"`   // .app.spec.destination.namespace
	Environment string `json:"environment"` // a label; the namespace when empty
	Service     string `json:"service"`     // optional; the app name when empty
	Version     string `json:"version"`     // optional; the revision when empty
	Phase       string `json:"phase"`       // .app.status.operationState.phase
	Revision    string `json:"revision"`    // .app.status.operationState.syncResult.revision
	FinishedAt  string `json:"finished_at"` // .app.status.operationState.finishedAt
	RepoURL     string `json:"repo_url"`    // .app.spec.source.repoURL
	Author      string `json:"author"`      // .app.status.operationState.operation.initiatedBy.username
	URL         string `json:"url"`
}

// FromArgoCD reads one Argo CD notification (the body above). A sync that
// Succeeded is a succeeded deploy, one that Failed or ended in Error a
// failed one; Running and Terminating are ignored.
func FromArgoCD(body []byte) (Delivery, error) {
	var b argoCDBody
	if err := decodeObject(body, &b); err != nil {
		return Delivery{}, err
	}
	for _, s := range []*string{&b.App, &b.Project, &b.Namespace, &b.Environment, &b.Service, &b.Version,
		&b.Phase, &b.Revision, &b.FinishedAt, &b.RepoURL, &b.Author, &b.URL} {
		if strings.TrimSpace(*s) == "<no value>" {
			*s = ""
		}
	}
	d := Deploy{Type: TypeDeploy}
	switch b.Phase {
	case "Succeeded":
		d.Status = StatusSucceeded
	case "Failed", "Error":
		d.Status = StatusFailed
	case "Running", "Terminating":
		return Delivery{Ignored: "sync phase " + b.Phase}, nil
	case "":
		return Delivery{}, &FieldError{Field: "phase", Msg: "is required"}
	default:
		return Delivery{}, &FieldError{Field: "phase", Msg: fmt.Sprintf("%.32q is not an Argo CD operation phase (Succeeded, Failed, Error, Running, Terminating)", b.Phase)}
	}
	app, err := text("app", b.App, true)
	if err != nil {
		return Delivery{}, err
	}
	if d.Service, err = text("service", firstNonEmpty(strings.TrimSpace(b.Service), app), true); err != nil {
		return Delivery{}, err
	}
	if d.Environment, err = text("environment", firstNonEmpty(strings.TrimSpace(b.Environment), strings.TrimSpace(b.Namespace)), false); err != nil {
		return Delivery{}, err
	}
	if d.Environment == "" {
		return Delivery{}, &FieldError{Field: "environment", Msg: "is required (or namespace)"}
	}
	if d.Timestamp, err = vendorTime("finished_at", b.FinishedAt); err != nil {
		return Delivery{}, err
	}
	rev, err := text("revision", b.Revision, false)
	if err != nil {
		return Delivery{}, err
	}
	if isSHA(rev) {
		d.Commit = strings.ToLower(rev)
		rev = shortSHA(rev)
	}
	if d.Version, err = text("version", firstNonEmpty(strings.TrimSpace(b.Version), rev), false); err != nil {
		return Delivery{}, err
	}
	if d.Version == "" {
		return Delivery{}, &FieldError{Field: "revision", Msg: "is required (or version)"}
	}
	if d.Author, err = text("author", b.Author, false); err != nil {
		return Delivery{}, err
	}
	if d.URL, err = text("url", b.URL, false); err != nil {
		return Delivery{}, err
	}
	repoURL, err := text("repo_url", b.RepoURL, false)
	if err != nil {
		return Delivery{}, err
	}
	d.Attributes = map[string]string{"argocd.app": app, "argocd.phase": b.Phase}
	if b.Revision != "" {
		d.Attributes["argocd.revision"] = strings.TrimSpace(b.Revision)
	}
	if repoURL != "" {
		d.Attributes["argocd.repo_url"] = repoURL
	}
	project, err := text("project", b.Project, false)
	if err != nil {
		return Delivery{}, err
	}
	if project != "" {
		d.Attributes["argocd.project"] = project
	}
	dl := Delivery{Deploy: finish(&d)}
	// An app synced from the application's own repository deployed that
	// repository's commit: its pushes give the deploy a lead time.
	if d.Commit != "" {
		dl.Repository = repoPath(repoURL)
	}
	return dl, nil
}

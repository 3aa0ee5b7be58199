package events

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// GitLabConfig names the service a project deploys.
type GitLabConfig struct {
	// Services maps "group/project" (lower case, see ParseServiceMap) to a
	// service; the default is the project's path (its last segment).
	Services map[string]string
}

type glProject struct {
	ID                int64  `json:"id"`
	Name              string `json:"name"`
	PathWithNamespace string `json:"path_with_namespace"`
}

type glEvent struct {
	ObjectKind string     `json:"object_kind"`
	Project    *glProject `json:"project"`

	// Deployment Hook.
	Status          string `json:"status"`
	StatusChangedAt string `json:"status_changed_at"`
	DeploymentID    int64  `json:"deployment_id"`
	DeployableURL   string `json:"deployable_url"`
	Environment     string `json:"environment"`
	ShortSHA        string `json:"short_sha"`
	CommitURL       string `json:"commit_url"`
	User            *struct {
		Username string `json:"username"`
	} `json:"user"`

	// Push Hook, and the deployment's ref (GitLab 15.x and later).
	Ref     string     `json:"ref"`
	Before  string     `json:"before"`
	After   string     `json:"after"`
	Commits []ghCommit `json:"commits"`
}

// FromGitLab reads one GitLab webhook delivery (the body's object_kind
// decides, not the X-Gitlab-Event header). A deployment event of status
// success is a succeeded deploy, failed or canceled a failed one (it never
// went live); running, blocked and approval events are ignored. A branch
// push is returned as a Push, like GitHub's.
func FromGitLab(body []byte, c GitLabConfig) (Delivery, error) {
	var e glEvent
	if err := decodeObject(body, &e); err != nil {
		return Delivery{}, err
	}
	switch e.ObjectKind {
	case "deployment":
		return gitlabDeployment(&e, c)
	case "push":
		if e.Project == nil {
			return Delivery{}, &FieldError{Field: "project", Msg: "is required"}
		}
		repo, err := text("project.path_with_namespace", e.Project.PathWithNamespace, true)
		if err != nil {
			return Delivery{}, err
		}
		return push(repo, e.Ref, e.Before, e.After, false, false, e.Commits, nil)
	case "":
		return Delivery{}, &FieldError{Field: "object_kind", Msg: "is required"}
	}
	return Delivery{Ignored: fmt.Sprintf("object_kind %.32s", e.ObjectKind)}, nil
}

func gitlabDeployment(e *glEvent, c GitLabConfig) (Delivery, error) {
	d := Deploy{Type: TypeDeploy}
	switch e.Status {
	case "success":
		d.Status = StatusSucceeded
	case "failed", "canceled":
		d.Status = StatusFailed
	case "":
		return Delivery{}, &FieldError{Field: "status", Msg: "is required"}
	default:
		return Delivery{Ignored: fmt.Sprintf("deployment status %.32s", e.Status)}, nil
	}
	if e.Project == nil {
		return Delivery{}, &FieldError{Field: "project", Msg: "is required"}
	}
	repo, err := text("project.path_with_namespace", e.Project.PathWithNamespace, true)
	if err != nil {
		return Delivery{}, err
	}
	if d.Environment, err = text("environment", e.Environment, true); err != nil {
		return Delivery{}, err
	}
	if d.Timestamp, err = vendorTime("status_changed_at", e.StatusChangedAt); err != nil {
		return Delivery{}, err
	}
	// The full sha is only in the commit URL (…/-/commit/<sha>).
	commitURL, err := text("commit_url", e.CommitURL, false)
	if err != nil {
		return Delivery{}, err
	}
	full := path.Base(commitURL)
	switch {
	case isSHA(full):
		d.Commit = strings.ToLower(full)
	case len(e.ShortSHA) >= 7 && len(e.ShortSHA) <= 64 && isHex(e.ShortSHA):
		d.Commit = strings.ToLower(e.ShortSHA)
	default:
		return Delivery{}, &FieldError{Field: "commit_url", Msg: "names no commit (nor does short_sha)"}
	}
	ref, err := text("ref", e.Ref, false)
	if err != nil {
		return Delivery{}, err
	}
	if tag, ok := tagVersion(ref); ok {
		d.Version = tag
	} else {
		d.Version = shortSHA(d.Commit)
	}
	d.Service = firstNonEmpty(c.Services[strings.ToLower(repo)], path.Base(repo))
	if e.User != nil {
		if d.Author, err = text("user.username", e.User.Username, false); err != nil {
			return Delivery{}, err
		}
	}
	if d.URL, err = text("deployable_url", firstNonEmpty(e.DeployableURL, commitURL), false); err != nil {
		return Delivery{}, err
	}
	d.Attributes = map[string]string{
		"gitlab.project":       repo,
		"gitlab.deployment_id": strconv.FormatInt(e.DeploymentID, 10),
		"gitlab.status":        e.Status,
	}
	if ref != "" {
		d.Attributes["gitlab.ref"] = ref
	}
	dl := Delivery{Deploy: finish(&d)}
	if isSHA(d.Commit) {
		dl.Repository = repo
	}
	return dl, nil
}

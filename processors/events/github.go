package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// GitHubConfig names the service a repository deploys.
type GitHubConfig struct {
	// Services maps "owner/repo" (lower case, see ParseServiceMap) to a
	// service. A deployment's payload.service wins over it; the repository
	// name is the default.
	Services map[string]string
}

// FromGitHub reads one GitHub webhook delivery; event is its X-GitHub-Event
// header. A deployment_status of state success is a succeeded deploy,
// failure or error a failed one, and any other state is ignored. A branch
// push is returned as a Push, whose commits give lead time to the deploy
// that later ships them. Every other event (ping, ...) is ignored.
func FromGitHub(event string, body []byte, c GitHubConfig) (Delivery, error) {
	if event == "" {
		return Delivery{}, &FieldError{Field: "X-GitHub-Event", Msg: "header is required"}
	}
	if len(event) > 64 || strings.Trim(event, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return Delivery{}, &FieldError{Field: "X-GitHub-Event", Msg: "is not a GitHub event name"}
	}
	switch event {
	case "deployment_status":
		return githubDeploymentStatus(body, c)
	case "push":
		return githubPush(body)
	}
	var obj map[string]json.RawMessage
	if err := decodeObject(body, &obj); err != nil {
		return Delivery{}, err
	}
	return Delivery{Ignored: "event " + event}, nil
}

type ghUser struct {
	Login string `json:"login"`
}

type ghRepository struct {
	Name     string `json:"name"`
	FullName string `json:"full_name"`
	HTMLURL  string `json:"html_url"`
}

type ghDeploymentStatusEvent struct {
	DeploymentStatus *struct {
		State       string `json:"state"`
		Environment string `json:"environment"`
		CreatedAt   string `json:"created_at"`
		UpdatedAt   string `json:"updated_at"`
		LogURL      string `json:"log_url"`
		TargetURL   string `json:"target_url"`
	} `json:"deployment_status"`
	Deployment *struct {
		ID          int64           `json:"id"`
		SHA         string          `json:"sha"`
		Ref         string          `json:"ref"`
		Environment string          `json:"environment"`
		Payload     json.RawMessage `json:"payload"`
		Creator     *ghUser         `json:"creator"`
	} `json:"deployment"`
	Repository *ghRepository `json:"repository"`
}

func githubDeploymentStatus(body []byte, c GitHubConfig) (Delivery, error) {
	var e ghDeploymentStatusEvent
	if err := decodeObject(body, &e); err != nil {
		return Delivery{}, err
	}
	st, dep, repo := e.DeploymentStatus, e.Deployment, e.Repository
	if st == nil {
		return Delivery{}, &FieldError{Field: "deployment_status", Msg: "is required"}
	}
	d := Deploy{Type: TypeDeploy}
	switch st.State {
	case "success":
		d.Status = StatusSucceeded
	case "failure", "error":
		d.Status = StatusFailed
	case "":
		return Delivery{}, &FieldError{Field: "deployment_status.state", Msg: "is required"}
	default:
		return Delivery{Ignored: fmt.Sprintf("deployment_status state %.32s", st.State)}, nil
	}
	if dep == nil {
		return Delivery{}, &FieldError{Field: "deployment", Msg: "is required"}
	}
	if repo == nil {
		return Delivery{}, &FieldError{Field: "repository", Msg: "is required"}
	}
	fullName, err := text("repository.full_name", repo.FullName, true)
	if err != nil {
		return Delivery{}, err
	}
	sha, err := text("deployment.sha", dep.SHA, true)
	if err != nil {
		return Delivery{}, err
	}
	if !isSHA(sha) {
		return Delivery{}, &FieldError{Field: "deployment.sha", Msg: "is not a commit sha"}
	}
	d.Commit = strings.ToLower(sha)
	if d.Environment, err = text("deployment.environment", firstNonEmpty(dep.Environment, st.Environment), true); err != nil {
		return Delivery{}, err
	}
	at, field := st.UpdatedAt, "deployment_status.updated_at"
	if strings.TrimSpace(at) == "" {
		at, field = st.CreatedAt, "deployment_status.created_at"
	}
	if d.Timestamp, err = vendorTime(field, at); err != nil {
		return Delivery{}, err
	}
	payVersion, payService, err := githubPayload(dep.Payload)
	if err != nil {
		return Delivery{}, err
	}
	ref, err := text("deployment.ref", dep.Ref, false)
	if err != nil {
		return Delivery{}, err
	}
	switch tag, isTag := tagVersion(ref); {
	case payVersion != "":
		d.Version = payVersion
	case isTag:
		d.Version = tag
	default:
		d.Version = shortSHA(d.Commit)
	}
	repoName, err := text("repository.name", repo.Name, false)
	if err != nil {
		return Delivery{}, err
	}
	d.Service = firstNonEmpty(payService, c.Services[strings.ToLower(fullName)], repoName)
	if d.Service == "" {
		return Delivery{}, &FieldError{Field: "repository.name", Msg: "is required (or deployment.payload.service)"}
	}
	if dep.Creator != nil {
		if d.Author, err = text("deployment.creator.login", dep.Creator.Login, false); err != nil {
			return Delivery{}, err
		}
	}
	d.URL = firstNonEmpty(st.LogURL, st.TargetURL)
	if d.URL == "" && repo.HTMLURL != "" {
		d.URL = strings.TrimSuffix(repo.HTMLURL, "/") + "/commit/" + d.Commit
	}
	if d.URL, err = text("deployment_status.log_url", d.URL, false); err != nil {
		return Delivery{}, err
	}
	d.Attributes = map[string]string{
		"github.repository":       fullName,
		"github.deployment_id":    strconv.FormatInt(dep.ID, 10),
		"github.deployment_state": st.State,
	}
	if ref != "" {
		d.Attributes["github.ref"] = ref
	}
	return Delivery{Deploy: finish(&d), Repository: fullName}, nil
}

// githubPayload reads version and service from a deployment's payload: an
// object, or (when the deployment was created with a string payload) a
// string holding one. Anything else is the creator's own business.
func githubPayload(raw json.RawMessage) (version, service string, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", "", nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", "", nil
		}
		raw = json.RawMessage(s)
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return "", "", nil
	}
	if version, err = str(m, "version", false); err != nil {
		return "", "", &FieldError{Field: "deployment.payload.version", Msg: err.(*FieldError).Msg}
	}
	if service, err = str(m, "service", false); err != nil {
		return "", "", &FieldError{Field: "deployment.payload.service", Msg: err.(*FieldError).Msg}
	}
	return version, service, nil
}

type ghCommit struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
}

type ghPushEvent struct {
	Ref        string        `json:"ref"`
	Before     string        `json:"before"`
	After      string        `json:"after"`
	Deleted    bool          `json:"deleted"`
	Forced     bool          `json:"forced"`
	Commits    []ghCommit    `json:"commits"`
	HeadCommit *ghCommit     `json:"head_commit"`
	Repository *ghRepository `json:"repository"`
}

func githubPush(body []byte) (Delivery, error) {
	var e ghPushEvent
	if err := decodeObject(body, &e); err != nil {
		return Delivery{}, err
	}
	if e.Repository == nil {
		return Delivery{}, &FieldError{Field: "repository", Msg: "is required"}
	}
	repo, err := text("repository.full_name", e.Repository.FullName, true)
	if err != nil {
		return Delivery{}, err
	}
	return push(repo, e.Ref, e.Before, e.After, e.Deleted, e.Forced, e.Commits, e.HeadCommit)
}

// push validates a branch push (GitHub's and GitLab's have the same
// shape). Tag pushes and deleted branches bring no commits to deploy.
func push(repo, ref, before, after string, deleted, forced bool, commits []ghCommit, head *ghCommit) (Delivery, error) {
	ref, err := text("ref", ref, true)
	if err != nil {
		return Delivery{}, err
	}
	if !strings.HasPrefix(ref, "refs/heads/") {
		return Delivery{Ignored: fmt.Sprintf("push of %.64s (only branch pushes bring commits)", ref)}, nil
	}
	if deleted || zeroSHA(after) {
		return Delivery{Ignored: fmt.Sprintf("push deleting %.64s", ref)}, nil
	}
	if !isSHA(after) {
		return Delivery{}, &FieldError{Field: "after", Msg: "is not a commit sha"}
	}
	if before != "" && !isSHA(before) {
		return Delivery{}, &FieldError{Field: "before", Msg: "is not a commit sha"}
	}
	p := &Push{Repository: repo, Ref: ref, Before: strings.ToLower(before), After: strings.ToLower(after), Forced: forced}
	seen := map[string]bool{}
	add := func(field string, c ghCommit) error {
		if !isSHA(c.ID) {
			return &FieldError{Field: field + ".id", Msg: "is not a commit sha"}
		}
		ts, err := vendorTime(field+".timestamp", c.Timestamp)
		if err != nil {
			return err
		}
		if sha := strings.ToLower(c.ID); !seen[sha] && len(p.Commits) < maxCommits {
			seen[sha] = true
			p.Commits = append(p.Commits, Commit{SHA: sha, Timestamp: ts})
		}
		return nil
	}
	for i, c := range commits {
		if err := add("commits["+strconv.Itoa(i)+"]", c); err != nil {
			return Delivery{}, err
		}
	}
	if head != nil && !seen[strings.ToLower(head.ID)] {
		if err := add("head_commit", *head); err != nil {
			return Delivery{}, err
		}
	}
	return Delivery{Push: p, Repository: repo}, nil
}

package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"net/http"
	"strings"

	"github.com/faultline-dev/faultline/processors/events"
)

// The CI/CD endpoints. Each authenticates a delivery with the vendor's own
// signature or token when its secret is configured (the gateway's bearer
// token otherwise: GitHub and GitLab cannot send one), lets
// processors/events parse it, and hands the result to deliver.

// vendorAuth is the Authorization check of a CI/CD endpoint: none when its
// vendor secret is set (the handler verifies the vendor's signature or
// token), the gateway's bearer token otherwise.
func (g *Gateway) vendorAuth(secret string) func(string) bool {
	if secret != "" {
		return func(string) bool { return true }
	}
	return g.authorized
}

func (g *Gateway) github(w http.ResponseWriter, r *http.Request, body []byte) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	if s := g.cfg.GitHubSecret; s != "" && !validSignature(r.Header.Get("X-Hub-Signature-256"), body, s, "sha256") {
		return fail(http.StatusUnauthorized, "missing or wrong X-Hub-Signature-256 (the webhook's secret differs from FAULTLINE_GATEWAY_GITHUB_SECRET)")
	}
	dl, err := events.FromGitHub(r.Header.Get("X-GitHub-Event"), body, g.hooks.github)
	if err != nil {
		return eventError(err)
	}
	return g.deliver(w, r, dl)
}

func (g *Gateway) gitlab(w http.ResponseWriter, r *http.Request, body []byte) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	if t := g.cfg.GitLabToken; t != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Gitlab-Token")), []byte(t)) != 1 {
		return fail(http.StatusUnauthorized, "missing or wrong X-Gitlab-Token (the webhook's secret token differs from FAULTLINE_GATEWAY_GITLAB_TOKEN)")
	}
	dl, err := events.FromGitLab(body, g.hooks.gitlab)
	if err != nil {
		return eventError(err)
	}
	return g.deliver(w, r, dl)
}

func (g *Gateway) argocd(w http.ResponseWriter, r *http.Request, body []byte) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	if t := g.cfg.ArgoCDToken; t != "" {
		header := g.cfg.ArgoCDHeader
		if header == "" {
			header = "Authorization"
		}
		want := t
		if strings.EqualFold(header, "Authorization") {
			want = "Bearer " + t
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(header)), []byte(want)) != 1 {
			return fail(http.StatusUnauthorized, "missing or wrong %s (FAULTLINE_GATEWAY_ARGOCD_TOKEN)", header)
		}
	}
	dl, err := events.FromArgoCD(body)
	if err != nil {
		return eventError(err)
	}
	return g.deliver(w, r, dl)
}

func (g *Gateway) flux(w http.ResponseWriter, r *http.Request, body []byte) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	if s := g.cfg.FluxSecret; s != "" && !validSignature(r.Header.Get("X-Signature"), body, s, "sha224", "sha256", "sha384", "sha512") {
		return fail(http.StatusUnauthorized, "missing or wrong X-Signature (the generic-hmac Provider's token differs from FAULTLINE_GATEWAY_FLUX_SECRET)")
	}
	dl, err := events.FromFlux(body)
	if err != nil {
		return eventError(err)
	}
	return g.deliver(w, r, dl)
}

// validSignature checks a "<hash>=<hex HMAC of the body>" header, the form
// GitHub (sha256) and Flux (sha256 by default) use, in constant time.
func validSignature(header string, body []byte, secret string, algos ...string) bool {
	algo, sig, ok := strings.Cut(strings.TrimSpace(header), "=")
	if !ok {
		return false
	}
	var newHash func() hash.Hash
	for _, a := range algos {
		if a != algo {
			continue
		}
		switch a {
		case "sha224":
			newHash = sha256.New224
		case "sha256":
			newHash = sha256.New
		case "sha384":
			newHash = sha512.New384
		case "sha512":
			newHash = sha512.New
		}
	}
	if newHash == nil {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(newHash, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// deliver acts on a parsed delivery: an ignored one is answered 200 with
// the reason, a push is remembered for lead time, and a deploy is
// published once (a repeated delivery is answered without storing it
// again), with the commits it shipped when its repository's pushes were
// seen.
func (g *Gateway) deliver(w http.ResponseWriter, r *http.Request, dl events.Delivery) error {
	ctx := r.Context()
	switch {
	case dl.Ignored != "":
		writeJSON(w, http.StatusOK, map[string]any{"accepted": 0, "ignored": dl.Ignored})
		return nil
	case dl.Push != nil:
		if err := g.hooks.recordPush(ctx, dl.Push); err != nil {
			return g.stateError(err)
		}
		writeJSON(w, http.StatusOK, map[string]any{"accepted": 0, "commits": len(dl.Push.Commits)})
		return nil
	case dl.Deploy == nil:
		return fail(http.StatusInternalServerError, "parser returned nothing")
	}
	d := *dl.Deploy
	if seen, err := g.hooks.published(ctx, d.MsgID()); err != nil {
		return g.stateError(err)
	} else if seen {
		writeJSON(w, http.StatusOK, map[string]any{"accepted": 0, "ignored": "already stored as " + d.ID, "id": d.ID})
		return nil
	}
	if dl.Object != "" {
		news, err := g.hooks.fluxNews(ctx, dl.Object, dl.Revision, d.Status)
		if err != nil {
			return g.stateError(err)
		}
		if !news {
			writeJSON(w, http.StatusOK, map[string]any{"accepted": 0, "ignored": dl.Object + " already reported revision " + dl.Revision})
			return nil
		}
	}
	if dl.Repository != "" && len(d.Commits) == 0 {
		commits, err := g.hooks.shipped(ctx, dl.Repository, d.Environment, d.Commit)
		if err != nil {
			return g.stateError(err)
		}
		d.Commits = commits
	}
	if err := g.publishDeploys(ctx, []events.Deploy{d}); err != nil {
		return err
	}
	// Remembering comes after the publish: a deploy never stored is never
	// marked. If it fails, the vendor's retry publishes the same message
	// id (dropped by JetStream) and tries again.
	if err := g.hooks.remember(ctx, d, dl); err != nil {
		return g.stateError(err)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"accepted": 1, "id": d.ID, "commits": len(d.Commits)})
	return nil
}

// stateError is a 503 the vendor retries: the gateway's memory (a
// JetStream key-value bucket) cannot be read or written now.
func (g *Gateway) stateError(err error) error {
	g.log.Warn("webhook state", "err", err)
	return &status{code: http.StatusServiceUnavailable, msg: "webhook state unavailable: " + err.Error()}
}

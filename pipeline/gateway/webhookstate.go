package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/events"
)

// What the CI/CD endpoints remember between deliveries, in one JetStream
// key-value bucket shared by every gateway and kept across restarts
// (entries expire after FAULTLINE_GATEWAY_WEBHOOK_STATE_TTL):
//
//   - push.<repo,after>: the commits (sha, timestamp) a branch push
//     brought and the commit it started from. A deploy of commit C in
//     environment E ships the commits of the push that ended at C, then of
//     the push before it, back to a commit already deployed in E (or a
//     new branch, a force push, a push never seen, 100 pushes or 1000
//     commits). The deploy event carries them in commits, so its lead time
//     (deployed at minus the earliest commit) covers every change it
//     shipped, not only the last.
//   - deployed.<repo,env,sha>: a commit that went live in an environment,
//     where the walk above stops.
//   - flux.<object>: the last revision a Flux object reported and how it
//     ended; a reconciliation of the same revision is not a new deploy.
//   - sent.<msg id>: a deploy already published; a delivery the vendor
//     repeats after JetStream's duplicate window is still stored once.
//
// Keys hash their parts: repository paths and environments hold characters
// a key cannot.
const (
	webhookBucket     = "faultline_webhooks"
	maxPushHops       = 100
	maxShippedCommits = 1000 // what a native deploy event may carry
)

type vendorHooks struct {
	github events.GitHubConfig
	gitlab events.GitLabConfig
	js     jetstream.JetStream
	kvCfg  jetstream.KeyValueConfig

	mu sync.Mutex
	kv jetstream.KeyValue
}

func newVendorHooks(c Config, js jetstream.JetStream, n broker.Config) (*vendorHooks, error) {
	gh, err := events.ParseRepoMap(c.GitHubServiceMap)
	if err != nil {
		return nil, fmt.Errorf("FAULTLINE_GATEWAY_GITHUB_SERVICE_MAP: %w", err)
	}
	gl, err := events.ParseRepoMap(c.GitLabServiceMap)
	if err != nil {
		return nil, fmt.Errorf("FAULTLINE_GATEWAY_GITLAB_SERVICE_MAP: %w", err)
	}
	ttl := c.WebhookStateTTL
	if ttl == 0 {
		ttl = 30 * 24 * time.Hour
	}
	replicas := max(n.Replicas, 1)
	return &vendorHooks{
		github: events.GitHubConfig{Services: gh},
		gitlab: events.GitLabConfig{Services: gl},
		js:     js,
		kvCfg: jetstream.KeyValueConfig{
			Bucket:      webhookBucket,
			Description: "faultline gateway: pushes, deployed commits, Flux revisions and deploys published from CI/CD webhooks",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
	}, nil
}

// bucket opens the bucket on first use, so a gateway starts (and serves
// OTLP) while NATS is still coming up; a failure is retried next time.
func (h *vendorHooks) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kv != nil {
		return h.kv, nil
	}
	kv, err := h.js.CreateOrUpdateKeyValue(ctx, h.kvCfg)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", webhookBucket, err)
	}
	h.kv = kv
	return kv, nil
}

func stateKey(kind string, parts ...string) string {
	s := sha256.New()
	for _, p := range parts {
		s.Write([]byte(p))
		s.Write([]byte{0})
	}
	return kind + "." + hex.EncodeToString(s.Sum(nil)[:16])
}

// Repository paths are case insensitive on GitHub and GitLab, and a
// deploy may name its repository from a clone URL.
func pushKey(repo, after string) string {
	return stateKey("push", strings.ToLower(repo), strings.ToLower(after))
}

func deployedKey(repo, env, sha string) string {
	return stateKey("deployed", strings.ToLower(repo), env, strings.ToLower(sha))
}

func (h *vendorHooks) get(ctx context.Context, key string) ([]byte, bool, error) {
	kv, err := h.bucket(ctx)
	if err != nil {
		return nil, false, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	return e.Value(), true, nil
}

func (h *vendorHooks) put(ctx context.Context, key string, v []byte) error {
	kv, err := h.bucket(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, v); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// pushRecord is what a push leaves for the deploys that ship it.
type pushRecord struct {
	Before  string          `json:"before"`
	Forced  bool            `json:"forced,omitempty"`
	Commits []events.Commit `json:"commits"`
}

func (h *vendorHooks) recordPush(ctx context.Context, p *events.Push) error {
	b, err := json.Marshal(pushRecord{Before: p.Before, Forced: p.Forced, Commits: p.Commits})
	if err != nil {
		return fmt.Errorf("encode push: %w", err)
	}
	return h.put(ctx, pushKey(p.Repository, p.After), b)
}

// shipped returns the commits a deploy of sha to env shipped: the pushes
// ending at sha, walked back to a commit already deployed to env. A commit
// already live in env ships nothing new.
func (h *vendorHooks) shipped(ctx context.Context, repo, env, sha string) ([]events.Commit, error) {
	if _, live, err := h.get(ctx, deployedKey(repo, env, sha)); err != nil || live {
		return nil, err
	}
	var out []events.Commit
	have := map[string]bool{}
	visited := map[string]bool{}
	for range maxPushHops {
		visited[sha] = true
		b, ok, err := h.get(ctx, pushKey(repo, sha))
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		var p pushRecord
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("decode push %s: %w", sha, err)
		}
		for _, c := range p.Commits {
			if !have[c.SHA] && len(out) < maxShippedCommits {
				have[c.SHA] = true
				out = append(out, c)
			}
		}
		if p.Forced || p.Before == "" || strings.Trim(p.Before, "0") == "" || visited[p.Before] || len(out) >= maxShippedCommits {
			break
		}
		if _, live, err := h.get(ctx, deployedKey(repo, env, p.Before)); err != nil {
			return nil, err
		} else if live {
			break
		}
		sha = p.Before
	}
	slices.SortFunc(out, func(a, b events.Commit) int {
		if c := a.Timestamp.Compare(b.Timestamp); c != 0 {
			return c
		}
		return strings.Compare(a.SHA, b.SHA)
	})
	return out, nil
}

// published reports whether a deploy message was already stored.
func (h *vendorHooks) published(ctx context.Context, msgID string) (bool, error) {
	_, ok, err := h.get(ctx, stateKey("sent", msgID))
	return ok, err
}

type fluxRecord struct {
	Revision string `json:"revision"`
	Status   string `json:"status"`
}

// fluxNews reports whether a Flux deploy is news: a revision the object has
// not reported, or the success of one it had reported failing.
func (h *vendorHooks) fluxNews(ctx context.Context, object, revision, status string) (bool, error) {
	b, ok, err := h.get(ctx, stateKey("flux", object))
	if err != nil {
		return false, err
	}
	if !ok {
		return true, nil
	}
	var last fluxRecord
	if json.Unmarshal(b, &last) != nil || last.Revision != revision {
		return true, nil
	}
	return status == events.StatusSucceeded && last.Status == events.StatusFailed, nil
}

// remember records what a published deploy means for later deliveries.
func (h *vendorHooks) remember(ctx context.Context, d events.Deploy, dl events.Delivery) error {
	if dl.Object != "" {
		b, _ := json.Marshal(fluxRecord{Revision: dl.Revision, Status: d.Status})
		if err := h.put(ctx, stateKey("flux", dl.Object), b); err != nil {
			return err
		}
	}
	if dl.Repository != "" && d.Status == events.StatusSucceeded {
		if err := h.put(ctx, deployedKey(dl.Repository, d.Environment, d.Commit), []byte(d.ID)); err != nil {
			return err
		}
	}
	return h.put(ctx, stateKey("sent", d.MsgID()), []byte(d.ID))
}

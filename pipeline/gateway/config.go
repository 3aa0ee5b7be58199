package gateway

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/events"
)

// Config is the gateway part of faultline's settings (FAULTLINE_GATEWAY_*).
type Config struct {
	Listen         string        `envconfig:"LISTEN" default:"127.0.0.1:4318" desc:"OTLP/HTTP and event endpoints"`
	GRPCListen     string        `envconfig:"GRPC_LISTEN" default:"127.0.0.1:4317" desc:"OTLP/gRPC; empty disables it"`
	Token          string        `envconfig:"TOKEN" desc:"bearer token every request must carry (HTTP Authorization header, gRPC authorization metadata)"`
	MaxBodyBytes   int           `envconfig:"MAX_BODY_BYTES" default:"8388608" desc:"largest request body after decompression; larger gets 413"`
	MaxItems       int           `envconfig:"MAX_ITEMS" default:"1000" desc:"most deploy or incident events in one request"`
	PublishTimeout time.Duration `envconfig:"PUBLISH_TIMEOUT" default:"10s" desc:"how long to wait for JetStream to persist a request before answering 503"`
	RetryAfter     time.Duration `envconfig:"RETRY_AFTER" default:"5s" desc:"Retry-After sent with 429 and 503"`
	Compression    string        `envconfig:"COMPRESSION" default:"s2" desc:"how the gateway compresses OTLP payloads on NATS: s2 (with a Content-Encoding: s2 header; workers decompress it) or none (the bytes as received, for other consumers of the subjects)"`
	ServiceLabel   string        `envconfig:"ALERTMANAGER_SERVICE_LABEL" default:"service" desc:"Alertmanager label naming the service"`
	EnvLabel       string        `envconfig:"ALERTMANAGER_ENVIRONMENT_LABEL" default:"environment" desc:"Alertmanager label naming the environment"`

	// Incident tools (PagerDuty webhooks, Grafana alerting).
	PagerDutySecret      string `envconfig:"PAGERDUTY_SECRET" desc:"signing secret of the PagerDuty v3 webhook subscription; set, /v1/pagerduty refuses deliveries whose X-PagerDuty-Signature does not match (401)"`
	PagerDutyServices    string `envconfig:"PAGERDUTY_SERVICES" desc:"PagerDuty service id or name = faultline service, comma-separated (PF9KMXH=checkout,API Service=api); unmapped services keep their PagerDuty name"`
	PagerDutyEnvironment string `envconfig:"PAGERDUTY_ENVIRONMENT" default:"production" desc:"environment of PagerDuty incidents (empty: production)"`
	GrafanaToken         string `envconfig:"GRAFANA_TOKEN" desc:"credential /v1/grafana also accepts: the contact point's Authorization header credentials (Bearer) or its basic auth password"`

	// CI/CD webhooks (/v1/github, /v1/gitlab, /v1/argocd, /v1/flux). With
	// its secret set, an endpoint requires the vendor's signature or token
	// instead of the bearer token.
	GitHubSecret     string        `envconfig:"GITHUB_SECRET" desc:"secret of the GitHub webhook: /v1/github requires a valid X-Hub-Signature-256"`
	GitHubServiceMap string        `envconfig:"GITHUB_SERVICE_MAP" desc:"owner/repo=service,... for repositories not named after their service"`
	GitLabToken      string        `envconfig:"GITLAB_TOKEN" desc:"secret token of the GitLab webhook: /v1/gitlab requires it in X-Gitlab-Token"`
	GitLabServiceMap string        `envconfig:"GITLAB_SERVICE_MAP" desc:"group/project=service,... for projects not named after their service"`
	ArgoCDToken      string        `envconfig:"ARGOCD_TOKEN" desc:"token /v1/argocd requires in ARGOCD_HEADER"`
	ArgoCDHeader     string        `envconfig:"ARGOCD_HEADER" default:"Authorization" desc:"header carrying ARGOCD_TOKEN: Authorization as Bearer <token>, any other header as the token itself"`
	FluxSecret       string        `envconfig:"FLUX_SECRET" desc:"token of the Flux generic-hmac Provider: /v1/flux requires a valid X-Signature"`
	WebhookStateTTL  time.Duration `envconfig:"WEBHOOK_STATE_TTL" default:"720h" desc:"how long the gateway remembers pushes (for lead time), deployed commits, Flux revisions and deliveries"`
}

// Validate checks the settings.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("FAULTLINE_GATEWAY_LISTEN: %q is not host:port: %w", c.Listen, err)
	}
	if c.GRPCListen != "" {
		if _, _, err := net.SplitHostPort(c.GRPCListen); err != nil {
			return fmt.Errorf("FAULTLINE_GATEWAY_GRPC_LISTEN: %q is not host:port: %w", c.GRPCListen, err)
		}
	}
	switch {
	case c.MaxBodyBytes < 1024 || c.MaxBodyBytes > broker.MaxDecodedBytes:
		return fmt.Errorf("FAULTLINE_GATEWAY_MAX_BODY_BYTES: %d, need 1024 to %d (what a worker decompresses at most)", c.MaxBodyBytes, broker.MaxDecodedBytes)
	case c.MaxItems < 1:
		return fmt.Errorf("FAULTLINE_GATEWAY_MAX_ITEMS: need at least 1")
	case c.PublishTimeout <= 0:
		return fmt.Errorf("FAULTLINE_GATEWAY_PUBLISH_TIMEOUT: must be positive")
	case c.RetryAfter < time.Second:
		return fmt.Errorf("FAULTLINE_GATEWAY_RETRY_AFTER: at least 1s")
	case c.Compression != "" && c.Compression != broker.EncodingS2 && c.Compression != "none":
		return fmt.Errorf("FAULTLINE_GATEWAY_COMPRESSION: %q, use s2 or none", c.Compression)
	case c.ServiceLabel == "" || c.EnvLabel == "":
		return fmt.Errorf("FAULTLINE_GATEWAY_ALERTMANAGER_*_LABEL: must not be empty")
	}
	if _, err := events.ParseServiceMap(c.PagerDutyServices); err != nil {
		return fmt.Errorf("FAULTLINE_GATEWAY_PAGERDUTY_SERVICES: %w", err)
	}
	return c.validateWebhooks()
}

// compression is the payload encoding the gateway publishes OTLP with;
// empty means the default, s2.
func (c *Config) compression() string {
	if c.Compression == "" {
		return broker.EncodingS2
	}
	return c.Compression
}

// validateWebhooks checks the CI/CD webhook settings. An empty
// ARGOCD_HEADER or WEBHOOK_STATE_TTL means the default.
func (c *Config) validateWebhooks() error {
	if _, err := events.ParseRepoMap(c.GitHubServiceMap); err != nil {
		return fmt.Errorf("FAULTLINE_GATEWAY_GITHUB_SERVICE_MAP: %w", err)
	}
	if _, err := events.ParseRepoMap(c.GitLabServiceMap); err != nil {
		return fmt.Errorf("FAULTLINE_GATEWAY_GITLAB_SERVICE_MAP: %w", err)
	}
	if h := c.ArgoCDHeader; h != "" && !isToken(h) {
		return fmt.Errorf("FAULTLINE_GATEWAY_ARGOCD_HEADER: %q is not a header name", h)
	}
	if c.WebhookStateTTL < 0 || (c.WebhookStateTTL > 0 && c.WebhookStateTTL < time.Hour) {
		return fmt.Errorf("FAULTLINE_GATEWAY_WEBHOOK_STATE_TTL: %s, need at least 1h", c.WebhookStateTTL)
	}
	return nil
}

// isToken reports whether s is an HTTP field name (RFC 9110 token).
func isToken(s string) bool {
	for _, r := range s {
		if r > 126 || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

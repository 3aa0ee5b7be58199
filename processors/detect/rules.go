package detect

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Rules are the detection settings. The zero-history floor (MinErrors,
// MinRatio) is the fixed rule every key starts with; Baseline, Versions,
// Latency and SLOs come on top of it. Services overrides any of them for
// one service (and environment).
type Rules struct {
	// The fixed rule: a minute breaches when it has at least MinErrors
	// errors and they are at least MinRatio of its records. It applies
	// while a key has no baseline yet (cold start).
	MinErrors    uint64        `json:"min_errors"`
	MinRatio     float64       `json:"min_ratio"`
	OpenAfter    int           `json:"open_after"`
	ResolveAfter int           `json:"resolve_after"`
	Lateness     time.Duration `json:"-"`
	LatenessText string        `json:"lateness,omitempty"`
	MinSeverity  int32         `json:"min_severity"`

	Baseline BaselineRules `json:"baseline"`
	Versions VersionRules  `json:"versions"`
	Latency  LatencyRules  `json:"latency"`
	// SLOs declare objectives; a key with one is judged by burn rate
	// on top of the other rules.
	SLOs []SLO `json:"slos,omitempty"`
	// Services are per-service overrides: each entry names a service
	// (and optionally an environment) and any rule fields to change.
	Services []json.RawMessage `json:"services,omitempty"`

	overrides map[[2]string]*Rules
}

// BaselineRules judge a minute against the key's own recent error ratio.
type BaselineRules struct {
	// HalfLifeMinutes weighs history: a minute this old counts half as
	// much as the latest one (an exponentially weighted baseline, which
	// needs no per-minute history in memory).
	HalfLifeMinutes float64 `json:"half_life_minutes"`
	// MinMinutes and MinRecords of (weighted) history make a baseline
	// trusted; below either, the fixed rule applies.
	MinMinutes float64 `json:"min_minutes"`
	MinRecords float64 `json:"min_records"`
	// LearnMinutes are a key's first minutes, which only teach: after
	// them the fixed rule judges, against what they taught, until the
	// baseline is trusted.
	LearnMinutes float64 `json:"learn_minutes"`
	// Alpha is the significance a minute's errors must reach: the
	// binomial probability of at least that many errors at the baseline
	// ratio.
	Alpha float64 `json:"alpha"`
	// The effect must also matter: the minute's ratio is at least
	// MinRelative times the baseline and MinAbsolute above it, with at
	// least MinErrors errors.
	MinRelative float64 `json:"min_relative"`
	MinAbsolute float64 `json:"min_absolute"`
	MinErrors   uint64  `json:"min_errors"`
}

// VersionRules compare a new version with the one it replaces while both
// serve (a canary, a rolling deploy).
type VersionRules struct {
	Enabled       bool    `json:"enabled"`
	WindowMinutes int     `json:"window_minutes"` // counts pooled over the last minutes
	Alpha         float64 `json:"alpha"`          // two-proportion (Fisher's exact when small) test
	MinRelative   float64 `json:"min_relative"`
	MinAbsolute   float64 `json:"min_absolute"`
	MinErrors     uint64  `json:"min_errors"`
}

// LatencyRules detect a shift of a latency quantile, estimated from
// histogram buckets, against the key's baseline quantile.
type LatencyRules struct {
	Enabled bool `json:"enabled"`
	// Metrics are the histogram metrics read, in seconds or milliseconds
	// (by unit); http.server.request.duration by default.
	Metrics  []string `json:"metrics"`
	Quantile float64  `json:"quantile"` // 0.95
	// A minute breaches when its quantile is at least MinRelative times
	// the baseline quantile and MinAbsolute seconds above it, and at
	// least MinShare of its requests are slower than the baseline's
	// quantile bound by a significant margin (binomial test at Alpha
	// against 1-Quantile).
	MinRelative float64 `json:"min_relative"`
	MinAbsolute float64 `json:"min_absolute_seconds"`
	Alpha       float64 `json:"alpha"`
	MinRequests uint64  `json:"min_requests"`
	// HalfLifeMinutes, MinMinutes: as for the error baseline.
	HalfLifeMinutes float64 `json:"half_life_minutes"`
	MinMinutes      float64 `json:"min_minutes"`
}

// SLO is a service objective, in the spirit of OpenSLO and Sloth: the
// share of good events (log records without error, or requests without
// 5xx, or requests faster than a threshold) over a window.
type SLO struct {
	Name        string  `json:"name"`
	Service     string  `json:"service"`
	Environment string  `json:"environment"`
	Objective   float64 `json:"objective"` // e.g. 99.9 (percent) or 0.999
	// Indicator: "errors" (log records with errors and 5xx requests are
	// the bad events) or "latency" (requests of the latency metrics slower
	// than ThresholdSeconds are).
	Indicator        string  `json:"indicator"`
	ThresholdSeconds float64 `json:"threshold_seconds,omitempty"`
	WindowDays       int     `json:"window_days,omitempty"` // the budget's period, for reading the burn rate: 30 by default
}

// DefaultRules work without any file.
func DefaultRules() Rules {
	return Rules{
		MinErrors: 10, MinRatio: 0.05, OpenAfter: 2, ResolveAfter: 5, Lateness: 2 * time.Minute, MinSeverity: 17,
		Baseline: BaselineRules{HalfLifeMinutes: 120, MinMinutes: 30, MinRecords: 100, LearnMinutes: 5, Alpha: 1e-4,
			MinRelative: 2.5, MinAbsolute: 0.02, MinErrors: 2},
		Versions: VersionRules{Enabled: true, WindowMinutes: 5, Alpha: 1e-6, MinRelative: 3, MinAbsolute: 0.05, MinErrors: 3},
		Latency: LatencyRules{Enabled: true, Metrics: []string{RequestMetric}, Quantile: 0.95, MinRelative: 2, MinAbsolute: 0.1,
			Alpha: 1e-6, MinRequests: 20, HalfLifeMinutes: 120, MinMinutes: 30},
	}
}

// Validate checks the rules.
func (r *Rules) Validate() error {
	between := func(name string, v, lo, hi float64) error {
		if math.IsNaN(v) || v < lo || v > hi {
			return fmt.Errorf("%s: %v, want a value in [%v, %v]", name, v, lo, hi)
		}
		return nil
	}
	switch {
	case r.MinErrors < 1:
		return fmt.Errorf("min_errors must be at least 1")
	case r.MinRatio <= 0 || r.MinRatio > 1:
		return fmt.Errorf("min_ratio must be in (0, 1]")
	case r.OpenAfter < 1 || r.ResolveAfter < 1:
		return fmt.Errorf("open_after and resolve_after must be at least 1")
	case r.Lateness < 0:
		return fmt.Errorf("lateness must not be negative")
	case r.MinSeverity < 1 || r.MinSeverity > 24:
		return fmt.Errorf("min_severity must be an OTLP severity number (1-24)")
	case r.Versions.Enabled && r.Versions.WindowMinutes < 1:
		return fmt.Errorf("versions.window_minutes must be at least 1")
	}
	b := r.Baseline
	for _, c := range []struct {
		name      string
		v, lo, hi float64
	}{
		{"baseline.half_life_minutes", b.HalfLifeMinutes, 1, 7 * 24 * 60},
		{"baseline.min_minutes", b.MinMinutes, 0, 1e6},
		{"baseline.min_records", b.MinRecords, 0, 1e12},
		{"baseline.learn_minutes", b.LearnMinutes, 0, 1e6},
		{"baseline.alpha", b.Alpha, 1e-300, 0.5},
		{"baseline.min_relative", b.MinRelative, 1, 1e6},
		{"baseline.min_absolute", b.MinAbsolute, 0, 1},
		{"versions.alpha", r.Versions.Alpha, 1e-300, 0.5},
		{"versions.min_relative", r.Versions.MinRelative, 1, 1e6},
		{"versions.min_absolute", r.Versions.MinAbsolute, 0, 1},
		{"latency.quantile", r.Latency.Quantile, 0.5, 0.9999},
		{"latency.min_relative", r.Latency.MinRelative, 1, 1e6},
		{"latency.min_absolute_seconds", r.Latency.MinAbsolute, 0, 1e6},
		{"latency.alpha", r.Latency.Alpha, 1e-300, 0.5},
		{"latency.half_life_minutes", r.Latency.HalfLifeMinutes, 1, 7 * 24 * 60},
		{"latency.min_minutes", r.Latency.MinMinutes, 0, 1e6},
	} {
		if err := between(c.name, c.v, c.lo, c.hi); err != nil {
			return err
		}
	}
	for i := range r.SLOs {
		if err := r.SLOs[i].normalize(); err != nil {
			return fmt.Errorf("slos[%d]: %w", i, err)
		}
	}
	return nil
}

func (s *SLO) normalize() error {
	if s.Service == "" {
		return fmt.Errorf("service is required")
	}
	if s.Objective > 1 {
		s.Objective /= 100 // 99.9 means 99.9%
	}
	if !(s.Objective > 0 && s.Objective < 1) {
		return fmt.Errorf("objective must lie between 0 and 100%% (exclusive)")
	}
	switch s.Indicator {
	case "", "errors":
		s.Indicator = "errors"
	case "latency":
		if !(s.ThresholdSeconds > 0) {
			return fmt.Errorf("a latency objective needs threshold_seconds")
		}
	default:
		return fmt.Errorf("indicator %q: want errors or latency", s.Indicator)
	}
	if s.Name == "" {
		s.Name = fmt.Sprintf("%s %s %.4g%%", s.Service, s.Indicator, s.Objective*100)
		if s.Indicator == "latency" {
			s.Name = fmt.Sprintf("%s %.4g%% under %s", s.Service, s.Objective*100, dur(s.ThresholdSeconds))
		}
	}
	return nil
}

// LoadRules reads a rules file (JSON, or YAML when it ends in .yaml or
// .yml) over the defaults: fields it leaves out keep their default.
func LoadRules(path string) (Rules, error) {
	r := DefaultRules()
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("rules file: %w", err)
	}
	if strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml") {
		if b, err = yaml.YAMLToJSON(b); err != nil {
			return r, fmt.Errorf("rules file %s: %w", path, err)
		}
	}
	if err := r.parse(b); err != nil {
		return r, fmt.Errorf("rules file %s: %w", path, err)
	}
	return r, nil
}

// ParseRules reads rules from JSON over the defaults.
func ParseRules(b []byte) (Rules, error) {
	r := DefaultRules()
	return r, r.parse(b)
}

func (r *Rules) parse(b []byte) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return err
	}
	if r.LatenessText != "" {
		var err error
		if r.Lateness, err = time.ParseDuration(r.LatenessText); err != nil {
			return fmt.Errorf("lateness: %w", err)
		}
	}
	if err := r.Validate(); err != nil {
		return err
	}
	return r.resolveOverrides()
}

// override is one entry of Services: who it applies to; the rest of the
// entry is rule fields.
type override struct {
	Service     string `json:"service"`
	Environment string `json:"environment"`
}

// resolveOverrides applies each Services entry over the file's rules, so
// For is a lookup. Lateness is the watermark's and cannot differ.
func (r *Rules) resolveOverrides() error {
	r.overrides = nil
	for i, raw := range r.Services {
		var o override
		if err := json.Unmarshal(raw, &o); err != nil {
			return fmt.Errorf("services[%d]: %w", i, err)
		}
		if o.Service == "" {
			return fmt.Errorf("services[%d]: service is required", i)
		}
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(raw, &fields)
		for _, k := range []string{"lateness", "services", "slos"} {
			if _, ok := fields[k]; ok {
				return fmt.Errorf("services[%d]: %s cannot be set per service", i, k)
			}
		}
		delete(fields, "service")
		delete(fields, "environment")
		rest, _ := json.Marshal(fields)
		c := r.base()
		dec := json.NewDecoder(strings.NewReader(string(rest)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return fmt.Errorf("services[%d] (%s): %w", i, o.Service, err)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("services[%d] (%s): %w", i, o.Service, err)
		}
		if r.overrides == nil {
			r.overrides = map[[2]string]*Rules{}
		}
		r.overrides[[2]string{o.Service, o.Environment}] = &c
	}
	return nil
}

// base is a copy of r without its overrides and SLOs.
func (r *Rules) base() Rules {
	c := *r
	c.Services, c.SLOs, c.overrides = nil, nil, nil
	c.Latency.Metrics = append([]string(nil), r.Latency.Metrics...)
	return c
}

// For returns the rules of one service and environment: an override for
// exactly that pair, else one for the service in any environment, else r.
func (r *Rules) For(service, env string) *Rules {
	if o, ok := r.overrides[[2]string{service, env}]; ok {
		return o
	}
	if o, ok := r.overrides[[2]string{service, ""}]; ok {
		return o
	}
	return r
}

// SLOFor returns the objectives declared for a service and environment
// (an SLO without environment applies to every environment).
func (r *Rules) SLOFor(service, env string) []SLO {
	var out []SLO
	for _, s := range r.SLOs {
		if s.Service == service && (s.Environment == "" || s.Environment == env) {
			out = append(out, s)
		}
	}
	return out
}

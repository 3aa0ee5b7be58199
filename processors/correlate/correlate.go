// Package correlate ranks the deploys that may have caused an incident and
// decides which deploys were change failures.
//
// Candidates (docs/detection.md): live deploys of the incident's service and
// environment in [StartedAt - 2h, StartedAt], and live deploys of other
// services in the same environment in [StartedAt - 30m, StartedAt]. Never
// across environments; a failed deploy (never live) is never a candidate.
//
// Score, in [0, 1]:
//   - same service, the deploy live when the incident started:
//     0.35 + 0.55 * recency, recency = 1 - age/2h (0.9 for a deploy a
//     moment before, 0.625 an hour before, below 0.5 after about 1h38m);
//   - same service, an earlier deploy that the live one had replaced:
//     0.25 * recency;
//   - another service: 0.3 * (1 - age/30m), so never enough on its own;
//   - telemetry evidence, when the detector has per-version counts: if most
//     errors since StartedAt carry the suspect's service.version (>= 60%)
//     and the version live before it was clean, +0.25; if the suspect's
//     version carried no errors while others did, -0.3. An earlier deploy
//     whose version carries the errors is scored as if it were live: the
//     errors say it is what the service still runs;
//   - when detection compared versions (a canary), the deploy of the
//     failing version is the suspect the evidence names: it scores as
//     live, and the other same-service deploys lose 0.3.
//
// The top candidate's score is the incident's Confidence. It is pinned on
// the incident, and its deploy is a change failure, when Confidence >=
// Threshold (0.5 by default). A deploy is also a change failure when it
// was rolled back; a rollback itself never is for having rolled back.
package correlate

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/processors/deploys"
)

// Config holds the windows and threshold.
type Config struct {
	SameService  time.Duration // 2h
	OtherService time.Duration // 30m
	Threshold    float64       // 0.5
}

// DefaultConfig is the documented one: 2h, 30m and a threshold of 0.5.
func DefaultConfig() Config {
	return Config{SameService: 2 * time.Hour, OtherService: 30 * time.Minute, Threshold: 0.5}
}

// Incident is what correlation needs of an incident.
type Incident struct {
	ID, Service, Environment string
	StartedAt                time.Time
	ResolvedAt               time.Time // zero while open
	// FailingVersion is the version detection found worse than the one
	// it replaces, when it compared versions; empty otherwise.
	FailingVersion string
}

// Suspect is a ranked candidate.
type Suspect struct {
	Deploy *deploys.Deploy
	Rank   int // 1 is the top suspect
	Score  float64
	Reason string
}

// Evidence returns, per service.version, [records, errors] of a service in
// an environment over [from, to). Nil when there is no telemetry.
type Evidence func(service, env string, from, to time.Time) map[string][2]uint64

// Verdict is the outcome for one incident.
type Verdict struct {
	Suspects   []Suspect
	Confidence float64 // the top suspect's score; 0 without candidates
	Pinned     *Suspect
	// RestoredBy is the rollback of the pinned deploy that went live
	// between StartedAt and ResolvedAt, or a later deploy of the service in
	// that span (a forward fix).
	RestoredBy *deploys.Deploy
}

// Correlate ranks the candidates of inc.
func Correlate(inc Incident, idx *deploys.Index, ev Evidence, c Config) Verdict {
	var out []Suspect
	live, _ := idx.LiveAt(inc.Service, inc.Environment, inc.StartedAt)
	for _, d := range idx.Between(inc.Service, inc.Environment, inc.StartedAt.Add(-c.SameService), inc.StartedAt) {
		age := inc.StartedAt.Sub(d.At)
		rec := 1 - age.Seconds()/c.SameService.Seconds()
		s := Suspect{Deploy: d}
		asLive := 0.35 + 0.55*rec
		switch {
		case inc.FailingVersion != "" && d.Version == inc.FailingVersion:
			s.Score = asLive + 0.25
			s.Reason = fmt.Sprintf("%s %s went live %s before the incident started, and detection found %s failing more than the version it replaces",
				d.Service, d.Version, round(age), d.Version)
		case d == live:
			s.Score = asLive
			s.Reason = fmt.Sprintf("%s %s went live %s before the incident started", d.Service, d.Version, round(age))
		default:
			s.Score = 0.25 * rec
			s.Reason = fmt.Sprintf("%s %s went live %s before the incident, but was replaced before it started", d.Service, d.Version, round(age))
		}
		switch {
		case inc.FailingVersion != "" && d.Version != inc.FailingVersion:
			if d == live {
				s.Score -= 0.3
				s.Reason += fmt.Sprintf("; the failing version is %s", inc.FailingVersion)
			}
		case inc.FailingVersion == "" && ev != nil:
			s.Score, s.Reason = weigh(s.Score, asLive, s.Reason, inc, d, d == live, idx, ev)
		}
		s.Score = math.Max(0, math.Min(s.Score, 0.99))
		out = append(out, s)
	}
	for _, d := range idx.Between("", inc.Environment, inc.StartedAt.Add(-c.OtherService), inc.StartedAt) {
		if d.Service == inc.Service {
			continue
		}
		age := inc.StartedAt.Sub(d.At)
		out = append(out, Suspect{
			Deploy: d,
			Score:  0.3 * (1 - age.Seconds()/c.OtherService.Seconds()),
			Reason: fmt.Sprintf("another service in %s: %s %s went live %s before the incident", inc.Environment, d.Service, d.Version, round(age)),
		})
	}
	slices.SortStableFunc(out, func(a, b Suspect) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		if c := b.Deploy.At.Compare(a.Deploy.At); c != 0 {
			return c
		}
		return strings.Compare(a.Deploy.ID, b.Deploy.ID)
	})
	v := Verdict{Suspects: out}
	for i := range out {
		out[i].Rank = i + 1
		out[i].Score = math.Round(out[i].Score*1000) / 1000
	}
	if len(out) > 0 {
		v.Confidence = out[0].Score
		if v.Confidence >= c.Threshold {
			v.Pinned = &out[0]
		}
	}
	if !inc.ResolvedAt.IsZero() {
		v.RestoredBy = restoredBy(inc, v.Pinned, idx)
	}
	return v
}

// weigh adjusts a suspect's score by which versions carried the errors: a
// replaced deploy whose version carries them is scored as live (asLive).
func weigh(score, asLive float64, reason string, inc Incident, d *deploys.Deploy, live bool, idx *deploys.Index, ev Evidence) (float64, string) {
	after := ev(inc.Service, inc.Environment, inc.StartedAt, inc.StartedAt.Add(10*time.Minute))
	var errs, mine uint64
	for v, c := range after {
		errs += c[1]
		if v == d.Version {
			mine += c[1]
		}
	}
	if errs == 0 {
		return score, reason
	}
	share := float64(mine) / float64(errs)
	prevClean := true
	prev, ok := idx.LiveAt(d.Service, d.Environment, d.At.Add(-time.Nanosecond))
	if ok {
		before := ev(inc.Service, inc.Environment, d.At.Add(-30*time.Minute), d.At)
		if c, ok := before[prev.Version]; ok && c[0] > 0 && float64(c[1])/float64(c[0]) >= 0.05 {
			prevClean = false
		}
	}
	switch {
	case share >= 0.6 && prevClean:
		score = max(score, asLive) + 0.25
		reason += fmt.Sprintf("; %.0f%% of the errors since then come from %s", share*100, d.Version)
		if ok {
			reason += fmt.Sprintf(" while %s was clean", prev.Version)
		}
	case !live:
		// A replaced deploy that does not carry the errors stays where
		// recency put it.
	case mine == 0:
		score -= 0.3
		reason += fmt.Sprintf("; none of the errors come from %s", d.Version)
	}
	return math.Max(0, math.Min(score, 0.99)), reason
}

func restoredBy(inc Incident, pinned *Suspect, idx *deploys.Index) *deploys.Deploy {
	if pinned != nil {
		if rb, ok := idx.RolledBack(pinned.Deploy); ok && !rb.By.At.Before(inc.StartedAt) && !rb.By.At.After(inc.ResolvedAt) {
			return rb.By
		}
	}
	for _, d := range idx.Between(inc.Service, inc.Environment, inc.StartedAt, inc.ResolvedAt) {
		if pinned == nil || d != pinned.Deploy {
			return d // the latest deploy before it resolved: a forward fix
		}
	}
	return nil
}

func round(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return d.Round(time.Minute).String()
}

// FailureReason says in words why a deploy is a change failure; empty when
// it is not one.
func FailureReason(pinnedBy []PinnedBy, rb *deploys.Rollback) string {
	var parts []string
	for _, p := range pinnedBy {
		parts = append(parts, fmt.Sprintf("top suspect of incident %s, confidence %.2f: %s", p.IncidentID, p.Confidence, p.Reason))
	}
	if rb != nil {
		parts = append(parts, fmt.Sprintf("rolled back by %s after %s", rb.By.ID, round(rb.By.At.Sub(rb.Of.At))))
	}
	return strings.Join(parts, "; ")
}

// PinnedBy is an incident a deploy was pinned on.
type PinnedBy struct {
	IncidentID string
	Confidence float64
	Reason     string
}

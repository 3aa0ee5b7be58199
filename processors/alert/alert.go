// Package alert defines the alert events faultline sends when it pins a
// failure on a deploy: the body of its webhooks (README), with ids that are
// stable for a fact (re-deriving the same fact after a restart gives the
// same id; a different top suspect is a different fact).
package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Types of alert.
const (
	TypeCorrelated = "incident.correlated"
	TypeResolved   = "incident.resolved"
	TypeRolledBack = "deploy.rolled_back"
	// TypeRetracted withdraws an incident that an early, provisional
	// verdict opened and the final verdict did not confirm.
	TypeRetracted = "incident.retracted"
)

// Event is one alert.
type Event struct {
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Time     time.Time `json:"time"` // event time of the fact
	Incident *Incident `json:"incident,omitempty"`
	Suspects []Suspect `json:"suspects,omitempty"`
	Verdict  *Verdict  `json:"change_failure,omitempty"`
	Deploy   *Deploy   `json:"deploy,omitempty"`
	Links    []Link    `json:"links,omitempty"`
}

// Incident is the incident an alert is about.
type Incident struct {
	ID                   string     `json:"id"`
	Service              string     `json:"service"`
	Environment          string     `json:"environment"`
	Source               string     `json:"source"`
	Title                string     `json:"title,omitempty"`
	Severity             string     `json:"severity,omitempty"`
	Signal               string     `json:"signal,omitempty"`           // the rule that opened it, or "explicit"
	DetectionReason      string     `json:"detection_reason,omitempty"` // why, in words
	StartedAt            time.Time  `json:"started_at"`
	ResolvedAt           *time.Time `json:"resolved_at,omitempty"`
	TimeToRestoreSeconds *float64   `json:"time_to_restore_seconds,omitempty"`
	RestoredByDeployID   string     `json:"restored_by_deploy_id,omitempty"`
	Confidence           float64    `json:"confidence"`
	// Provisional: detected on live data before the allowed lateness had
	// passed; the final verdict confirms it silently or retracts it
	// (incident.retracted).
	Provisional bool `json:"provisional,omitempty"`
}

// Suspect is a ranked candidate deploy.
type Suspect struct {
	DeployID   string    `json:"deploy_id"`
	Service    string    `json:"service"`
	Version    string    `json:"version"`
	DeployedAt time.Time `json:"deployed_at"`
	Rank       int       `json:"rank"`
	Score      float64   `json:"score"`
	Reason     string    `json:"reason"`
	URL        string    `json:"url,omitempty"`
	Author     string    `json:"author,omitempty"`
}

// Verdict names the deploy judged a change failure and why.
type Verdict struct {
	DeployID string `json:"deploy_id"`
	Version  string `json:"version"`
	Reason   string `json:"reason"`
}

// Deploy is the deploy a deploy.rolled_back alert is about.
type Deploy struct {
	ID           string    `json:"id"`
	Service      string    `json:"service"`
	Environment  string    `json:"environment"`
	Version      string    `json:"version"`
	DeployedAt   time.Time `json:"deployed_at"`
	RolledBackBy string    `json:"rolled_back_by"`
	RolledBackAt time.Time `json:"rolled_back_at"`
	URL          string    `json:"url,omitempty"`
}

// Link is somewhere a person can follow up.
type Link struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// ID derives an alert's id from the parts that make its fact.
func ID(typ string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(typ))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return "alert-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// Correlated is an incident pinned on a top suspect.
func Correlated(inc Incident, suspects []Suspect, v Verdict) Event {
	return Event{ID: ID(TypeCorrelated, inc.ID, v.DeployID), Type: TypeCorrelated, Time: inc.StartedAt, Incident: &inc, Suspects: suspects, Verdict: &v}
}

// Resolved is an incident that ended.
func Resolved(inc Incident, suspects []Suspect, v *Verdict) Event {
	at := inc.StartedAt
	if inc.ResolvedAt != nil {
		at = *inc.ResolvedAt
	}
	return Event{ID: ID(TypeResolved, inc.ID, at.UTC().Format(time.RFC3339Nano)), Type: TypeResolved, Time: at, Incident: &inc, Suspects: suspects, Verdict: v}
}

// RolledBack is a deploy marked a change failure by its rollback alone.
func RolledBack(d Deploy, reason string) Event {
	return Event{ID: ID(TypeRolledBack, d.ID, d.RolledBackBy), Type: TypeRolledBack, Time: d.RolledBackAt, Deploy: &d,
		Verdict: &Verdict{DeployID: d.ID, Version: d.Version, Reason: reason}}
}

// Retracted is a provisional incident the final verdict did not confirm.
func Retracted(inc Incident, suspects []Suspect) Event {
	return Event{ID: ID(TypeRetracted, inc.ID), Type: TypeRetracted, Time: inc.StartedAt, Incident: &inc, Suspects: suspects}
}

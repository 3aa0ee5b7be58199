package correlate

import "time"

// The rows correlation produces: the latest state of a deploy, an incident
// and an incident's suspects, as the deploys, incidents and
// incident_suspects tables hold them.

// DeployRow is a deploy's state.
type DeployRow struct {
	DeployID, Service, Environment, Version, Type, Status string
	DeployedAt                                            time.Time
	CommitSha                                             string
	FirstCommitAt                                         *time.Time
	LeadTimeSeconds                                       *float64
	Author, URL                                           string
	Attributes                                            map[string]string
	ChangeFailure                                         bool
	FailureReason, RolledBackBy                           string
}

// IncidentRow is an incident's state.
type IncidentRow struct {
	IncidentID, Service, Environment, Title, Severity, Source string
	// Signal is the rule that opened a detected incident ('errors',
	// 'latency', 'slo_burn', 'version_errors') or 'explicit' for one that
	// was reported; DetectionReason says why in words.
	Signal, DetectionReason         string
	StartedAt                       time.Time
	ResolvedAt                      *time.Time
	TimeToRestoreSeconds            *float64
	SuspectDeployID, SuspectVersion string
	Confidence                      float32
	RestoredByDeployID              string
}

// SuspectRow is one ranked candidate of an incident.
type SuspectRow struct {
	IncidentID, DeployID                  string
	Rank                                  uint16
	Score, Confidence                     float32
	Reason, Service, Environment, Version string
}

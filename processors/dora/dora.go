// Package dora holds the four DORA keys of a service and environment and
// rates each on the bands of the 2023 State of DevOps report.
package dora

import (
	"math"
	"time"
)

// Band is a performance level.
type Band string

const (
	Elite  Band = "elite"
	High   Band = "high"
	Medium Band = "medium"
	Low    Band = "low"
	None   Band = "" // no data to rate
)

// Summary is the four keys of one environment and service over a window.
type Summary struct {
	Environment string `json:"environment"`
	Service     string `json:"service"`

	Deployments    uint64  `json:"deployments"`
	ChangeFailures uint64  `json:"change_failures"`
	Incidents      uint64  `json:"incidents"`
	DeploysPerDay  float64 `json:"deploys_per_day"`
	// Nil when there is nothing to compute them from.
	ChangeFailureRate          *float64 `json:"change_failure_rate"`
	MedianTimeToRestoreSeconds *float64 `json:"median_time_to_restore_seconds"`
	MedianLeadTimeSeconds      *float64 `json:"median_lead_time_seconds"`

	Bands Bands `json:"bands"`
}

// Bands rates each key.
type Bands struct {
	DeploymentFrequency Band `json:"deployment_frequency"`
	LeadTime            Band `json:"lead_time"`
	ChangeFailureRate   Band `json:"change_failure_rate"`
	TimeToRestore       Band `json:"time_to_restore"`
}

const day = 24 * time.Hour

// Rate fills s.Bands from its keys.
func (s *Summary) Rate() {
	s.Bands = Bands{
		DeploymentFrequency: FrequencyBand(s.Deployments, s.DeploysPerDay),
		LeadTime:            durationBand(s.MedianLeadTimeSeconds, day, 7*day, 30*day),
		ChangeFailureRate:   FailureRateBand(s.ChangeFailureRate),
		TimeToRestore:       durationBand(s.MedianTimeToRestoreSeconds, time.Hour, day, 7*day),
	}
}

// FrequencyBand: elite deploys on demand (at least daily), high at least
// weekly, medium at least monthly.
func FrequencyBand(deployments uint64, perDay float64) Band {
	switch {
	case deployments == 0:
		return None
	case perDay >= 1:
		return Elite
	case perDay >= 1.0/7:
		return High
	case perDay >= 1.0/30:
		return Medium
	}
	return Low
}

// FailureRateBand: elite <= 5%, high <= 10%, medium <= 15%.
func FailureRateBand(rate *float64) Band {
	if rate == nil || math.IsNaN(*rate) {
		return None
	}
	switch r := *rate; {
	case r <= 0.05:
		return Elite
	case r <= 0.10:
		return High
	case r <= 0.15:
		return Medium
	}
	return Low
}

// durationBand rates a median duration in seconds against three strict
// upper bounds (elite, high, medium).
func durationBand(seconds *float64, elite, high, medium time.Duration) Band {
	if seconds == nil || math.IsNaN(*seconds) {
		return None
	}
	d := time.Duration(*seconds * float64(time.Second))
	switch {
	case d < elite:
		return Elite
	case d < high:
		return High
	case d < medium:
		return Medium
	}
	return Low
}

// LeadTimeBand: elite under a day, high under a week, medium under 30 days.
func LeadTimeBand(seconds *float64) Band { return durationBand(seconds, day, 7*day, 30*day) }

// RestoreBand: elite under an hour, high under a day, medium under a week.
func RestoreBand(seconds *float64) Band { return durationBand(seconds, time.Hour, day, 7*day) }

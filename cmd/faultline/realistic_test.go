package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/faultline-dev/faultline/pipeline/replay"
)

// TestRealisticScenario is the yardstick of detection and correlation: it
// replays replay.Realistic(1), four hours of noisy production traffic with
// eight real incidents and as many traps, through the whole stack, reads
// the detected incidents and their suspects back from ClickHouse and scores
// them against the scenario's ground truth with replay.Score. The target:
// every real incident detected in time, nothing else detected, every
// incident pinned on the right deploy (or on none).
//
// The score table is logged whatever the outcome, so a detector change
// can be judged by how it moves.
func TestRealisticScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 580k log records through the whole stack")
	}
	began := time.Now()
	reqs, exp := replay.Realistic(1)
	aggs := expectedAggregates(t, reqs)
	observed := metrics.GetOrCreateCounter("faultline_correlator_aggregates_total")
	base := observed.Get()
	built := time.Since(began)
	var got []replay.Detected
	var settled time.Duration
	runStack(t, stackRun{
		reqs: reqs,
		// The correlator has observed every aggregate the workers
		// published: the incidents follow within a flush.
		settled:      func(context.Context, *stack) bool { return observed.Get()-base >= aggs },
		settleWithin: 3 * time.Minute,
		inspect: func(ctx context.Context, s *stack) {
			if n := observed.Get() - base; n < aggs {
				t.Errorf("the correlator observed %d of the %d aggregates", n, aggs)
			}
			settled = time.Since(began)
			time.Sleep(2500 * time.Millisecond) // two flushes
			got = detectedIncidents(t, ctx, s)
			checkIncidentIDs(t, ctx, s)
		},
	})
	r := replay.Score(exp, got)
	t.Logf("realistic scenario (built in %s, replayed and settled after %s):\n%s", built.Round(time.Millisecond), settled.Round(time.Second), r)
	if !r.Perfect() {
		t.Errorf("%s; want recall %d/%d, false 0, suspects right %d/%d", r.Summary(), len(exp), len(exp), len(exp), len(exp))
	}
}

// expectedAggregates counts what the correlator observes of reqs: one
// aggregate per service version and minute of logs (the realistic
// scenario's logs requests hold one ResourceLogs per version, all in one
// minute) and one per histogram point.
func expectedAggregates(t *testing.T, reqs []replay.Request) uint64 {
	var n uint64
	for _, r := range reqs {
		switch r.Path {
		case replay.PathMetrics:
			n += uint64(r.Records)
		case replay.PathLogs:
			// ExportLogsServiceRequest: field 1 is each ResourceLogs.
			for b := r.Body; len(b) > 0; {
				num, typ, l := protowire.ConsumeTag(b)
				if l < 0 {
					t.Fatalf("logs request at %s: %v", r.At, protowire.ParseError(l))
				}
				b = b[l:]
				m := protowire.ConsumeFieldValue(num, typ, b)
				if m < 0 {
					t.Fatalf("logs request at %s: %v", r.At, protowire.ParseError(m))
				}
				b = b[m:]
				if num == 1 {
					n++
				}
			}
		}
	}
	return n
}

// detectedIncidents reads the detected incidents with their pinned suspect
// and, as a note, their rank-1 candidate.
func detectedIncidents(t *testing.T, ctx context.Context, s *stack) []replay.Detected {
	rows, err := s.ch.Query(ctx, `SELECT i.Service, i.Environment, i.StartedAt, i.SuspectVersion, ifNull(formatDateTime(i.ResolvedAt, '%H:%i'), 'open'),
			c.Service, c.Version, c.Score
		FROM incidents AS i FINAL
		LEFT JOIN (SELECT IncidentId, Service, Version, Score FROM incident_suspects FINAL WHERE Rank = 1) AS c USING IncidentId
		WHERE i.Source = 'detected' ORDER BY i.StartedAt, i.Service, i.Environment`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []replay.Detected
	for rows.Next() {
		var d replay.Detected
		var resolved, topService, topVersion string
		var score float32
		if err := rows.Scan(&d.Service, &d.Environment, &d.StartedAt, &d.SuspectVersion, &resolved, &topService, &topVersion, &score); err != nil {
			t.Fatal(err)
		}
		d.Note = "until " + resolved
		if topVersion != "" {
			d.Note += fmt.Sprintf(", rank 1 %s %s (%.2f)", topService, topVersion, score)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

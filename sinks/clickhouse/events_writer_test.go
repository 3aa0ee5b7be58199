package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/processors/correlate"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestEventsWriterRetract writes incidents with suspects, retracts one, and
// checks that only its rows are gone, including for ids that need quoting.
func TestEventsWriterRetract(t *testing.T) { schemas(t, testEventsWriterRetract) }

func testEventsWriterRetract(t *testing.T, cfg clickhouse.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	w, err := clickhouse.NewEventsWriter(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	ids := []string{"det-a", "det-b", "it's"}
	var is []correlate.IncidentRow
	var ss []correlate.SuspectRow
	for _, id := range ids {
		is = append(is, correlate.IncidentRow{IncidentID: id, Service: "checkout", Environment: "production", Source: "detected", StartedAt: at})
		ss = append(ss, correlate.SuspectRow{IncidentID: id, DeployID: "d1", Rank: 1, Score: 0.9})
	}
	if err := w.Write(ctx, nil, is, ss); err != nil {
		t.Fatal(err)
	}
	if err := w.Retract(ctx, []string{"det-a", "it's"}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"incidents", "incident_suspects"} {
		var left []string
		if err := conn.QueryRow(ctx, "SELECT groupArray(IncidentId) FROM (SELECT IncidentId FROM "+table+" FINAL ORDER BY IncidentId)").Scan(&left); err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0] != "det-b" {
			t.Errorf("%s after retract: %q, want [det-b]", table, left)
		}
	}
}

package clickhouse_test

import (
	"context"
	"fmt"
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

// TestEventsWriterDeploys writes deploys, some twice, and reads back a key
// and time range: the latest state of each, nothing outside the range, and
// a service name that needs quoting is only a value.
func TestEventsWriterDeploys(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := chtest.Database(t)
	conn := chtest.Conn(t, cfg)
	w, err := clickhouse.NewEventsWriter(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 10, 0, 0, 123456789, time.UTC)
	lead := 90.5
	first := at.Add(-time.Hour)
	row := func(id, svc, env string, min int) correlate.DeployRow {
		return correlate.DeployRow{DeployID: id, Service: svc, Environment: env, Version: "v-" + id, Type: "deploy", Status: "succeeded",
			DeployedAt: at.Add(time.Duration(min) * time.Minute), Attributes: map[string]string{"team": "pay"}}
	}
	a := row("a", "checkout", "production", 0)
	a.LeadTimeSeconds, a.FirstCommitAt = &lead, &first
	if err := w.Write(ctx, []correlate.DeployRow{a, row("b", "checkout", "production", 30), row("c", "cart", "production", 10),
		row("d", "checkout", "staging", 5), row("e", "checkout", "production", 200), row("q", "it's", "production", 20)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	b := row("b", "checkout", "production", 30)
	b.ChangeFailure, b.FailureReason = true, "rolled back"
	if err := w.Write(ctx, []correlate.DeployRow{b}, nil, nil); err != nil {
		t.Fatal(err)
	}
	ids := func(rs []correlate.DeployRow) (out []string) {
		for _, r := range rs {
			out = append(out, r.DeployID)
		}
		return out
	}
	for _, tc := range []struct {
		service string
		want    string
	}{{"checkout", "[a b]"}, {"", "[a c q b]"}, {"it's", "[q]"}, {"' OR 1=1 --", "[]"}} {
		got, err := w.Deploys(ctx, "production", tc.service, at, at.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if s := fmt.Sprint(ids(got)); s != tc.want {
			t.Errorf("service %q: %s, want %s", tc.service, s, tc.want)
		}
		for _, r := range got {
			switch r.DeployID {
			case "a":
				if !r.DeployedAt.Equal(at) || r.LeadTimeSeconds == nil || *r.LeadTimeSeconds != lead || r.Attributes["team"] != "pay" {
					t.Errorf("a read back as %+v", r)
				}
			case "b":
				if !r.ChangeFailure || r.FailureReason != "rolled back" {
					t.Errorf("b not in its latest state: %+v", r)
				}
			}
		}
	}
}

package replay

import (
	"bytes"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
)

func TestScenarioDeterministic(t *testing.T) {
	a, b := Scenario(1), Scenario(1)
	if len(a) != len(b) {
		t.Fatalf("lengths differ: %d, %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Path != b[i].Path || !bytes.Equal(a[i].Body, b[i].Body) {
			t.Fatalf("request %d differs between two builds with the same seed", i)
		}
	}
}

// TestScenarioErrorCounts checks the property the detection assertions rest
// on: a minute of checkout at 20% errors carries exactly 60 of 300.
func TestScenarioErrorCounts(t *testing.T) {
	at := T0.Add(15 * time.Minute)
	found := false
	for _, r := range Scenario(1) {
		if r.Path != PathLogs || !r.At.Equal(at) {
			continue
		}
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(r.Body); err != nil {
			t.Fatal(err)
		}
		rl := req.Logs().ResourceLogs().At(0)
		svc, _ := rl.Resource().Attributes().Get("service.name")
		env, _ := rl.Resource().Attributes().Get("deployment.environment.name")
		if svc.Str() != "checkout" || env.Str() != "production" {
			continue
		}
		found = true
		recs := rl.ScopeLogs().At(0).LogRecords()
		errs := 0
		for i := 0; i < recs.Len(); i++ {
			if recs.At(i).SeverityNumber() >= plog.SeverityNumberError {
				errs++
			}
		}
		if recs.Len() != 300 || errs != 60 {
			t.Fatalf("checkout at +15m: %d records, %d errors; want 300 and 60", recs.Len(), errs)
		}
	}
	if !found {
		t.Fatal("no checkout production request at +15m")
	}
}

func TestShuffleWithinWindow(t *testing.T) {
	reqs := Scenario(1)
	window := 2 * time.Minute
	out := Shuffle(reqs, window, 7)
	if len(out) != len(reqs) {
		t.Fatalf("shuffle changed the count: %d -> %d", len(reqs), len(out))
	}
	moved := 0
	var latest time.Time
	for i, r := range out {
		if r.At.Before(latest.Add(-window)) {
			t.Fatalf("request %d at %s sent after one at %s: beyond the window", i, r.At, latest)
		}
		if r.At.After(latest) {
			latest = r.At
		}
		if r.Path != reqs[i].Path || !r.At.Equal(reqs[i].At) {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("shuffle moved nothing")
	}
}

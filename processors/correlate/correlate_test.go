package correlate

import (
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/processors/deploys"
)

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func idx(ds ...deploys.Deploy) *deploys.Index {
	x := deploys.NewIndex()
	for _, d := range ds {
		if d.Type == "" {
			d.Type = "deploy"
		}
		if d.Status == "" {
			d.Status = "succeeded"
		}
		x.Add(d)
	}
	return x
}

func TestCorrelate(t *testing.T) {
	inc := Incident{ID: "i", Service: "checkout", Environment: "production", StartedAt: at(0)}
	for _, tc := range []struct {
		name     string
		deploys  []deploys.Deploy
		pinned   string
		suspects []string
	}{
		{"latest same-service deploy is pinned",
			[]deploys.Deploy{{ID: "a", Service: "checkout", Environment: "production", Version: "v1", At: at(-90)}, {ID: "b", Service: "checkout", Environment: "production", Version: "v2", At: at(-5)}},
			"b", []string{"b", "a"}},
		{"staging decoy is never a suspect",
			[]deploys.Deploy{{ID: "s", Service: "checkout", Environment: "staging", Version: "v9", At: at(-1)}},
			"", nil},
		{"a failed deploy is never a suspect",
			[]deploys.Deploy{{ID: "f", Service: "checkout", Environment: "production", Version: "v3", At: at(-2), Status: "failed"}},
			"", nil},
		{"older than two hours is not a candidate",
			[]deploys.Deploy{{ID: "o", Service: "checkout", Environment: "production", Version: "v0", At: at(-121)}},
			"", nil},
		{"another service alone stays below the threshold",
			[]deploys.Deploy{{ID: "p", Service: "payments", Environment: "production", Version: "v4", At: at(-1)}},
			"", []string{"p"}},
		{"an old same-service deploy stays below the threshold",
			[]deploys.Deploy{{ID: "q", Service: "checkout", Environment: "production", Version: "v5", At: at(-110)}},
			"", []string{"q"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Correlate(inc, idx(tc.deploys...), nil, DefaultConfig())
			var got []string
			for _, s := range v.Suspects {
				got = append(got, s.Deploy.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.suspects, ",") {
				t.Fatalf("suspects %v, want %v", got, tc.suspects)
			}
			pinned := ""
			if v.Pinned != nil {
				pinned = v.Pinned.Deploy.ID
			}
			if pinned != tc.pinned {
				t.Fatalf("pinned %q (confidence %.2f), want %q", pinned, v.Confidence, tc.pinned)
			}
		})
	}
}

func TestEvidenceAndRestore(t *testing.T) {
	x := idx(
		deploys.Deploy{ID: "v1", Service: "checkout", Environment: "production", Version: "v1", At: at(-200)},
		deploys.Deploy{ID: "v2", Service: "checkout", Environment: "production", Version: "v2", At: at(-100)}, // 1h40m before: weak on its own
		deploys.Deploy{ID: "rb", Service: "checkout", Environment: "production", Version: "v1", At: at(20), Type: "rollback"},
	)
	inc := Incident{ID: "i", Service: "checkout", Environment: "production", StartedAt: at(0), ResolvedAt: at(25)}
	if v := Correlate(inc, x, nil, DefaultConfig()); v.Pinned != nil {
		t.Fatalf("without evidence a deploy 100m old is pinned (%.2f)", v.Confidence)
	}
	ev := func(_, _ string, from, to time.Time) map[string][2]uint64 {
		if from.Before(at(0)) {
			return map[string][2]uint64{"v1": {1000, 2}} // v1 was clean before v2
		}
		return map[string][2]uint64{"v2": {1000, 95}, "v1": {50, 5}}
	}
	v := Correlate(inc, x, ev, DefaultConfig())
	if v.Pinned == nil || v.Pinned.Deploy.ID != "v2" || !strings.Contains(v.Pinned.Reason, "95% of the errors") {
		t.Fatalf("with evidence: %+v", v.Pinned)
	}
	if v.RestoredBy == nil || v.RestoredBy.ID != "rb" {
		t.Fatalf("restored by %+v, want the rollback", v.RestoredBy)
	}
	rb, _ := x.RolledBack(v.Pinned.Deploy)
	reason := FailureReason([]PinnedBy{{IncidentID: "i", Confidence: v.Confidence, Reason: v.Pinned.Reason}}, &rb)
	if !strings.HasPrefix(reason, "top suspect of incident i, confidence") || !strings.Contains(reason, "rolled back by rb after 2h0m0s") {
		t.Fatalf("failure reason %q", reason)
	}
}

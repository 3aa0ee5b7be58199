package correlator

import (
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/events"
)

// TestRollbackAfterResolved: a correlator replaying its streams (after a
// restart, or taking over from another) reads deploy events and
// aggregates side by side, so an incident may resolve before the rollback
// that ended it is read. The rollback must still be found to have
// restored it, as it is when the events arrive live.
func TestRollbackAfterResolved(t *testing.T) {
	at := func(m int) time.Time { return time.Date(2026, 11, 1, 10, m, 0, 0, time.UTC) }
	deploy := func(id, version, typ string, m int) events.Deploy {
		return events.Deploy{ID: id, Service: "checkout", Environment: "production", Version: version, Type: typ, Status: "succeeded", Timestamp: at(m)}
	}
	for _, rollbackFirst := range []bool{true, false} {
		c := New(Config{Threshold: 0.5, GapWait: time.Second, FlushInterval: time.Second}, nil, broker.DefaultConfig(), nil, nil)
		c.addDeploy(deploy("d0", "v1.0.0", "deploy", -180))
		c.addDeploy(deploy("d1", "v1.1.0", "deploy", 10))
		if rollbackFirst {
			c.addDeploy(deploy("d2", "v1.0.0", "rollback", 30))
		}
		id := detect.IncidentID("checkout", "production", at(12))
		c.apply([]detect.Transition{{IncidentID: id, Service: "checkout", Environment: "production", StartedAt: at(12)}})
		c.apply([]detect.Transition{{IncidentID: id, Service: "checkout", Environment: "production", StartedAt: at(12), Resolved: true, ResolvedAt: at(30)}})
		if !rollbackFirst {
			c.addDeploy(deploy("d2", "v1.0.0", "rollback", 30))
		}
		v := c.incidents[id].verdict
		if v.Pinned == nil || v.Pinned.Deploy.ID != "d1" {
			t.Fatalf("rollback read first %v: pinned on %+v, want d1", rollbackFirst, v.Pinned)
		}
		if v.RestoredBy == nil || v.RestoredBy.ID != "d2" {
			t.Errorf("rollback read first %v: restored by %+v, want the rollback d2", rollbackFirst, v.RestoredBy)
		}
	}
}

package events

import (
	"errors"
	"testing"
	"time"
)

func TestParseDeploysDefaultsAndIDs(t *testing.T) {
	ds, err := ParseDeploys([]byte(`{"service":" checkout ","environment":"production","version":"v1","timestamp":"2026-11-01T12:00:00+02:00",
		"commits":[{"sha":"a","timestamp":"2026-11-01T09:00:00Z"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := ds[0]
	if d.Service != "checkout" || d.Type != TypeDeploy || d.Status != StatusSucceeded || !d.Timestamp.Equal(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("%+v", d)
	}
	again, _ := ParseDeploys([]byte(`{"service":"checkout","environment":"production","version":"v1","timestamp":"2026-11-01T10:00:00Z"}`))
	if again[0].ID != d.ID {
		t.Fatalf("same deploy, different ids: %s %s", again[0].ID, d.ID)
	}
}

func TestFieldErrors(t *testing.T) {
	for _, tc := range []struct {
		body, field string
		index       int
	}{
		{`{"environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z"}`, "service", 0},
		{`[{"service":"s","environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z"},{"service":"s","environment":"p","version":"v","timestamp":"10:00"}]`, "timestamp", 1},
		{`{"service":"s","environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z","status":"maybe"}`, "status", 0},
		{`{"service":"s","environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z","commits":[{"sha":"a"}]}`, "commits[0].timestamp", 0},
		{`{"service":"s","environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z","attributes":{"a":1}}`, "attributes", 0},
	} {
		_, err := ParseDeploys([]byte(tc.body))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || fe.Index != tc.index {
			t.Errorf("%s: %v, want field %s at %d", tc.body, err, tc.field, tc.index)
		}
	}
}

func TestCDEventsAndAlertmanager(t *testing.T) {
	d, inc, err := FromCDEvent([]byte(`{"context":{"id":"1","source":"/ci","type":"dev.cdevents.service.rolledback.0.2.0","timestamp":"2026-11-01T10:00:00Z"},
		"subject":{"id":"checkout","content":{"environment":{"id":"production"},"artifactId":"pkg:oci/checkout@v1.2.3"}}}`))
	if err != nil || inc != nil || d.Type != TypeRollback || d.Version != "v1.2.3" || d.Service != "checkout" {
		t.Fatalf("%+v %v", d, err)
	}
	_, inc, err = FromCDEvent([]byte(`{"context":{"id":"2","type":"dev.cdevents.incident.resolved.0.3.0","timestamp":"2026-11-01T11:00:00Z"},
		"subject":{"id":"INC-9","content":{"environment":{"id":"production"},"service":{"id":"payments"}}}}`))
	if err != nil || inc.Status != StatusResolved || inc.Service != "payments" || inc.ID != "INC-9" {
		t.Fatalf("%+v %v", inc, err)
	}
	as, err := FromAlertmanager([]byte(`{"version":"4","alerts":[{"status":"resolved","labels":{"app":"a","env":"p"},"startsAt":"2026-11-01T10:00:00Z","endsAt":"2026-11-01T10:05:00Z","fingerprint":"f"}]}`),
		LabelConfig{Service: "app", Environment: "env"})
	if err != nil || len(as.Incidents) != 1 {
		t.Fatalf("%+v %v", as, err)
	}
	if is := as.Incidents; is[0].Status != StatusResolved || !is[0].Timestamp.Equal(time.Date(2026, 11, 1, 10, 5, 0, 0, time.UTC)) || is[0].ID != "am-f-1793527200" {
		t.Fatalf("%+v", is)
	}
}

// The fuzz targets: no input panics, and what parses satisfies the
// invariants the rest of faultline relies on. Seeds live in
// testdata/fuzz and run with every go test.
func FuzzParseDeploys(f *testing.F) {
	f.Add([]byte(`{"service":"s","environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z"}`))
	f.Add([]byte(`[{"id":"x","service":"s","environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z","type":"rollback","commits":[{"sha":"a","timestamp":"2026-11-01T09:00:00Z"}]}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ParseDeploys(b)
		if err != nil {
			return
		}
		for _, d := range ds {
			if d.ID == "" || d.Service == "" || d.Environment == "" || d.Version == "" || d.Timestamp.IsZero() {
				t.Fatalf("accepted an incomplete deploy: %+v", d)
			}
		}
	})
}

func FuzzParseIncidents(f *testing.F) {
	f.Add([]byte(`{"id":"i","service":"s","environment":"p","status":"open","timestamp":"2026-11-01T10:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		is, err := ParseIncidents(b)
		if err != nil {
			return
		}
		for _, i := range is {
			if i.ID == "" || (i.Status != StatusOpen && i.Status != StatusResolved) {
				t.Fatalf("accepted %+v", i)
			}
		}
	})
}

func FuzzNormalize(f *testing.F) {
	f.Add([]byte(`{"version":"4","alerts":[{"status":"firing","labels":{"service":"s","environment":"p"},"startsAt":"2026-11-01T10:00:00Z","fingerprint":"f"}]}`))
	f.Add([]byte(`{"context":{"type":"dev.cdevents.service.deployed.0.3.0","timestamp":"2026-11-01T10:00:00Z"},"subject":{"content":{"environment":{"id":"p"},"artifactId":"pkg:oci/a@1"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if as, err := FromAlertmanager(b, LabelConfig{}); err == nil {
			checkAlerts(t, as)
		}
		if d, inc, err := FromCDEvent(b); err == nil && d == nil && inc == nil {
			t.Fatal("no event and no error")
		}
	})
}

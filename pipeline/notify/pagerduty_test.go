package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/notify"
	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/sinks/webhook"
	"github.com/faultline-dev/faultline/sinks/webhook/webhooktest"
)

// TestPagerDutyTarget runs alerts through the notifier to a local Events
// API v2 receiver: an incident pinned on a deploy triggers, its resolve and
// a retraction resolve, in order and by incident id; a rollback without
// incident and an incident PagerDuty itself reported are not sent; a 429 is
// retried; an event PagerDuty calls invalid (400) is dead-lettered at once.
func TestPagerDutyTarget(t *testing.T) {
	ns := natstest.Start(t)
	pd := webhooktest.NewPagerDuty(t)
	pd.Throttle(1)
	strict := webhooktest.NewPagerDuty(t)
	targets := []webhook.Target{
		{Name: "pd", URL: pd.URL(), Format: "pagerduty", RoutingKey: "R0UT1NGKEY0123456789ABCDEFGHIJKL",
			Timeout: webhook.Duration(5 * time.Second), MaxAge: webhook.Duration(time.Minute)},
		{Name: "pd-wrong-key", URL: strict.URL(), Format: "pagerduty", RoutingKey: "not-an-integration-key",
			Timeout: webhook.Duration(5 * time.Second), MaxAge: webhook.Duration(time.Hour)},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a := correlated(0)
	resolvedAt := a.Incident.StartedAt.Add(15 * time.Minute)
	incA := *a.Incident
	incA.ResolvedAt = &resolvedAt
	b := correlated(1)
	b.Incident.Provisional = true
	fromPD := correlated(2)
	fromPD.Incident.Source = "pagerduty"
	fromPD.ID = "alert-from-pagerduty"
	for _, ev := range []alert.Event{
		a,
		alert.RolledBack(alert.Deploy{ID: "d9", Service: "inventory", Environment: "production", Version: "v8"}, "rolled back"),
		alert.Resolved(incA, a.Suspects, a.Verdict),
		b,
		fromPD,
		alert.Retracted(*b.Incident, nil),
	} {
		if err := notify.Publish(ctx, ns.JS, ev); err != nil {
			t.Fatal(err)
		}
	}
	n := notify.New(ns.JS, ns.Config, targets, webhook.NewClient("https://faultline.example.com"), nil)
	n.MinDelay, n.MaxDelay = 50*time.Millisecond, 200*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	waitFor(t, "four PagerDuty events", 10*time.Second, func() bool { return len(pd.Accepted()) == 4 })
	got := pd.Accepted()
	want := []struct{ action, key string }{
		{"trigger", "inc-a"}, {"resolve", "inc-a"}, {"trigger", "inc-b"}, {"resolve", "inc-b"},
	}
	for i, w := range want {
		if got[i].EventAction != w.action || got[i].DedupKey != w.key {
			t.Errorf("event %d: %s %s, want %s %s", i, got[i].EventAction, got[i].DedupKey, w.action, w.key)
		}
	}
	if len(pd.Rejected()) != 0 || pd.Calls() != 5 {
		t.Errorf("%d calls (want 4 and the throttled one), rejected %v", pd.Calls(), pd.Rejected())
	}

	dlq, err := ns.JS.Stream(ctx, ns.Config.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the invalid events dead-lettered", 10*time.Second, func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs == 4
	})
	if strict.Calls() != 4 {
		t.Errorf("invalid events were retried: %d calls for 4 events", strict.Calls())
	}
	m, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(broker.HeaderTarget) != "pd-wrong-key" {
		t.Errorf("dead letter for target %q", m.Header.Get(broker.HeaderTarget))
	}
	cancel()
	<-done
}

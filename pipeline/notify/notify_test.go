package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/notify"
	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/sinks/webhook"
)

// receiver is a real HTTP endpoint that verifies every delivery and can
// be told to fail.
type receiver struct {
	t      *testing.T
	secret string
	failN  int32         // fail this many requests first (503)
	delay  time.Duration // answer this slowly
	status int           // fail every request with this status, when set

	mu    sync.Mutex
	calls int32
	got   []alert.Event
	seen  map[string]bool
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	n := atomic.AddInt32(&r.calls, 1)
	if req.Header.Get("Content-Type") != "application/json" || req.Header.Get("X-Faultline-Timestamp") == "" {
		r.t.Errorf("headers: %v", req.Header)
	}
	if err := webhook.Verify(r.secret, req.Header, body, time.Now()); err != nil {
		r.t.Errorf("signature %q: %v", req.Header.Get(webhook.HeaderSignature), err)
	}
	if !webhook.LegacyVerify(r.secret, body, req.Header.Get("X-Faultline-Signature")) {
		r.t.Errorf("bad legacy signature %q", req.Header.Get("X-Faultline-Signature"))
	}
	time.Sleep(r.delay)
	if r.status != 0 {
		w.WriteHeader(r.status)
		return
	}
	if n <= r.failN {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var ev alert.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		r.t.Errorf("body: %v", err)
	}
	if ev.ID != req.Header.Get(webhook.HeaderID) || ev.ID != req.Header.Get("X-Faultline-Delivery") {
		r.t.Errorf("delivery id %q, body id %q", req.Header.Get(webhook.HeaderID), ev.ID)
	}
	r.mu.Lock()
	if !r.seen[ev.ID] { // receivers drop repeats by delivery id
		r.seen[ev.ID] = true
		r.got = append(r.got, ev)
	}
	r.mu.Unlock()
}

func (r *receiver) events() []alert.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]alert.Event(nil), r.got...)
}

func newReceiver(t *testing.T, secret string) (*receiver, *httptest.Server) {
	r := &receiver{t: t, secret: secret, seen: map[string]bool{}}
	s := httptest.NewServer(r)
	t.Cleanup(s.Close)
	return r, s
}

func correlated(i int) alert.Event {
	at := time.Date(2026, 11, 1, 10, i, 0, 0, time.UTC)
	return alert.Correlated(alert.Incident{ID: "inc-" + string(rune('a'+i)), Service: "checkout", Environment: "production", Source: "detected", StartedAt: at, Confidence: 0.9},
		[]alert.Suspect{{DeployID: "d1", Version: "v2", DeployedAt: at.Add(-2 * time.Minute), Rank: 1, Score: 0.9, Reason: "went live 2m before"}},
		alert.Verdict{DeployID: "d1", Version: "v2", Reason: "top suspect"})
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDeliveryRetryOrderAndDedup(t *testing.T) {
	ns := natstest.Start(t)
	ok, okSrv := newReceiver(t, "s1")
	flaky, flakySrv := newReceiver(t, "s2")
	flaky.failN = 3
	slow, slowSrv := newReceiver(t, "s3")
	slow.delay = 2 * time.Second
	targets := []webhook.Target{
		{Name: "ok", URL: okSrv.URL, Secret: "s1", Format: "json", Timeout: webhook.Duration(5 * time.Second), MaxAge: webhook.Duration(time.Minute)},
		{Name: "flaky", URL: flakySrv.URL, Secret: "s2", Format: "json", Timeout: webhook.Duration(5 * time.Second), MaxAge: webhook.Duration(time.Minute)},
		{Name: "slow", URL: slowSrv.URL, Secret: "s3", Format: "json", Timeout: webhook.Duration(5 * time.Second), MaxAge: webhook.Duration(time.Minute)},
		{Name: "staging-only", URL: okSrv.URL, Secret: "s1", Format: "json", Environments: []string{"staging"}, Timeout: webhook.Duration(time.Second), MaxAge: webhook.Duration(time.Minute)},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 3; i++ {
		ev := correlated(i)
		for j := 0; j < 2; j++ { // published twice: one message
			if err := notify.Publish(ctx, ns.JS, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := notify.New(ns.JS, ns.Config, targets, webhook.NewClient(""), nil)
	n.MinDelay, n.MaxDelay = 50*time.Millisecond, 200*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	start := time.Now()
	waitFor(t, "fast target", 5*time.Second, func() bool { return len(ok.events()) == 3 })
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("the fast target waited %s: the slow one delayed it", el)
	}
	waitFor(t, "flaky target", 10*time.Second, func() bool { return len(flaky.events()) == 3 })
	waitFor(t, "slow target", 20*time.Second, func() bool { return len(slow.events()) == 3 })
	for _, r := range []*receiver{ok, flaky, slow} {
		for i, ev := range r.events() {
			if ev.ID != correlated(i).ID {
				t.Fatalf("out of order or wrong: %d = %s", i, ev.ID)
			}
		}
	}
	if atomic.LoadInt32(&flaky.calls) != 3+3 {
		t.Errorf("flaky target got %d requests, want 3 failures + 3 deliveries", flaky.calls)
	}
	if atomic.LoadInt32(&ok.calls) != 3 {
		t.Errorf("the filtered staging-only target received production alerts: ok got %d requests", ok.calls)
	}
	cancel()
	<-done
}

func TestDeadLetterWhenDownOrRejected(t *testing.T) {
	ns := natstest.Start(t)
	_, down := newReceiver(t, "s")
	down.Close() // connection refused the whole time
	rej, rejSrv := newReceiver(t, "s")
	rej.status = http.StatusBadRequest
	targets := []webhook.Target{
		{Name: "down", URL: down.URL, Secret: "s", Format: "json", Timeout: webhook.Duration(time.Second), MaxAge: webhook.Duration(1500 * time.Millisecond)},
		{Name: "rejects", URL: rejSrv.URL, Secret: "s", Format: "json", Timeout: webhook.Duration(time.Second), MaxAge: webhook.Duration(time.Hour)},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := notify.Publish(ctx, ns.JS, correlated(0)); err != nil {
		t.Fatal(err)
	}
	n := notify.New(ns.JS, ns.Config, targets, webhook.NewClient(""), nil)
	n.MinDelay, n.MaxDelay = 100*time.Millisecond, 300*time.Millisecond
	go n.Run(ctx)
	dlq, err := ns.JS.Stream(ctx, ns.Config.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two dead letters", 15*time.Second, func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs == 2
	})
	if atomic.LoadInt32(&rej.calls) != 1 {
		t.Errorf("a 400 was retried: %d calls", rej.calls)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(broker.HeaderTarget) == "" || m.Header.Get(broker.HeaderReason) == "" || m.Subject != "faultline.dlq.webhook" {
			t.Fatalf("dead letter %d: %s %v", seq, m.Subject, m.Header)
		}
	}
}

// TestRestartMidRetry: a notifier stopped while retrying, and a new one
// started, delivers the event once (as the receiver counts by delivery id).
func TestRestartMidRetry(t *testing.T) {
	ns := natstest.Start(t)
	r, srv := newReceiver(t, "s")
	r.failN = 2
	targets := []webhook.Target{{Name: "t", URL: srv.URL, Secret: "s", Format: "json", Timeout: webhook.Duration(time.Second), MaxAge: webhook.Duration(time.Minute)}}
	if err := notify.Publish(context.Background(), ns.JS, correlated(0)); err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	n1 := notify.New(ns.JS, ns.Config, targets, webhook.NewClient(""), nil)
	n1.MinDelay, n1.MaxDelay = 300*time.Millisecond, 300*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- n1.Run(ctx1) }()
	waitFor(t, "first failure", 5*time.Second, func() bool { return atomic.LoadInt32(&r.calls) >= 1 })
	cancel1()
	<-done

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	n2 := notify.New(ns.JS, ns.Config, targets, webhook.NewClient(""), nil)
	n2.MinDelay, n2.MaxDelay = 100*time.Millisecond, 200*time.Millisecond
	go n2.Run(ctx2)
	waitFor(t, "delivery after restart", 10*time.Second, func() bool { return len(r.events()) == 1 })
	time.Sleep(500 * time.Millisecond)
	if len(r.events()) != 1 {
		t.Fatalf("delivered %d distinct events", len(r.events()))
	}
}

func TestTargetsConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    webhook.Config
		ok   bool
	}{
		{"none", webhook.Config{Timeout: time.Second, MaxAge: time.Minute}, true},
		{"url and secret", webhook.Config{URL: "https://hooks.example.com/x", Secret: "k", Timeout: time.Second, MaxAge: time.Minute}, true},
		{"unsigned", webhook.Config{URL: "https://hooks.example.com/x", Timeout: time.Second, MaxAge: time.Minute}, false},
		{"not http", webhook.Config{URL: "ftp://x", Secret: "k", Timeout: time.Second, MaxAge: time.Minute}, false},
		{"secret alone", webhook.Config{Secret: "k", Timeout: time.Second, MaxAge: time.Minute}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestStopMidDelivery: a notifier stopped while a receiver is answering
// finishes that delivery and acks it, so the notifier that follows (a
// standby correlator's, say) does not send it again.
func TestStopMidDelivery(t *testing.T) {
	ns := natstest.Start(t)
	r, srv := newReceiver(t, "s")
	r.delay = time.Second
	targets := []webhook.Target{{Name: "t", URL: srv.URL, Secret: "s", Format: "json", Timeout: webhook.Duration(5 * time.Second), MaxAge: webhook.Duration(time.Minute)}}
	if err := notify.Publish(context.Background(), ns.JS, correlated(0)); err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	n1 := notify.New(ns.JS, ns.Config, targets, webhook.NewClient(""), nil)
	done := make(chan error, 1)
	go func() { done <- n1.Run(ctx1) }()
	waitFor(t, "the delivery under way", 5*time.Second, func() bool { return atomic.LoadInt32(&r.calls) == 1 })
	cancel1()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(r.events()) != 1 {
		t.Fatalf("stopped mid-delivery: %d events received", len(r.events()))
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	n2 := notify.New(ns.JS, ns.Config, targets, webhook.NewClient(""), nil)
	go n2.Run(ctx2)
	cons, err := ns.JS.Consumer(ctx2, ns.Config.AlertsStream, "faultline-webhook-t")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the consumer's state", 5*time.Second, func() bool {
		ci, err := cons.Info(ctx2)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 && ci.AckFloor.Stream == 1
	})
	time.Sleep(500 * time.Millisecond)
	if n := atomic.LoadInt32(&r.calls); n != 1 {
		t.Fatalf("the receiver was called %d times, want once", n)
	}
}

// TestNotifiersShareTarget: two notifiers on one target (a leading and a
// standby correlator's) deliver every alert once, in order.
func TestNotifiersShareTarget(t *testing.T) {
	ns := natstest.Start(t)
	r, srv := newReceiver(t, "s")
	targets := []webhook.Target{{Name: "t", URL: srv.URL, Secret: "s", Format: "json", Timeout: webhook.Duration(5 * time.Second), MaxAge: webhook.Duration(time.Minute)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		n := notify.New(ns.JS, ns.Config, targets, webhook.NewClient(""), nil)
		wg.Go(func() { _ = n.Run(ctx) })
	}
	const alerts = 20
	for i := range alerts {
		if err := notify.Publish(ctx, ns.JS, correlated(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every alert", 10*time.Second, func() bool { return len(r.events()) == alerts })
	time.Sleep(300 * time.Millisecond)
	if n := atomic.LoadInt32(&r.calls); n != alerts {
		t.Errorf("%d requests for %d alerts", n, alerts)
	}
	for i, ev := range r.events() {
		if ev.ID != correlated(i).ID {
			t.Fatalf("delivery %d is %s, want %s", i, ev.ID, correlated(i).ID)
		}
	}
	cancel()
	wg.Wait()
}

package correlator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
)

// leaseRun is one process contending for a lease: its own NATS connection,
// and the moments its lead function started and returned.
type leaseRun struct {
	nc     *nats.Conn
	lease  *Lease
	cancel context.CancelFunc
	done   chan error
	once   sync.Once

	mu             sync.Mutex
	started, ended []time.Time
	cause          error // of the last lead context's end
}

func (r *leaseRun) times() (started, ended []time.Time, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.started...), append([]time.Time(nil), r.ended...), r.cause
}

// startLease connects to s and runs a lease called name with the given TTL
// for id; its lead function acts until its context ends.
func startLease(t *testing.T, s *natstest.Server, name, id string, ttl time.Duration) *leaseRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nc, err := broker.Connect(ctx, s.Config, s.ClientURL(), id, nil)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLease(ctx, js, s.Config, LeaseConfig{TTL: ttl}, name, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &leaseRun{nc: nc, lease: l, cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- l.Run(ctx, func(lctx context.Context) error {
			r.mu.Lock()
			r.started = append(r.started, time.Now())
			r.mu.Unlock()
			<-lctx.Done()
			r.mu.Lock()
			r.ended = append(r.ended, time.Now())
			r.cause = context.Cause(lctx)
			r.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() { r.stop(t); nc.Close() })
	return r
}

func (r *leaseRun) stop(t *testing.T) {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("lease run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("lease run did not stop")
		}
	})
}

// waitFor polls cond until it holds or within has passed.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
	}
}

func holder(t *testing.T, s *natstest.Server, name string) string {
	t.Helper()
	kv, err := s.JS.KeyValue(context.Background(), LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), name)
	if err != nil {
		return ""
	}
	return string(e.Value())
}

// TestLeaseOneLeader: of two contenders one leads, the other stands by; the
// leader keeps the lease across several TTLs by renewing it; released on a
// graceful stop, the standby takes it at its next attempt, well before
// the TTL.
func TestLeaseOneLeader(t *testing.T) {
	s := natstest.Start(t)
	const ttl = time.Second
	a := startLease(t, s, "one", "a", ttl)
	waitFor(t, 5*time.Second, "a leads", a.lease.Leading)
	b := startLease(t, s, "one", "b", ttl)
	waitFor(t, 5*time.Second, "b stands by", b.lease.Standby)

	time.Sleep(3 * ttl) // renewed, not expired
	if !a.lease.Leading() || b.lease.Leading() {
		t.Fatalf("after 3 TTLs: a leading %v, b leading %v", a.lease.Leading(), b.lease.Leading())
	}
	if h := holder(t, s, "one"); h != "a" {
		t.Fatalf("holder %q, want a", h)
	}
	if st, _, _ := b.times(); len(st) != 0 {
		t.Fatal("the standby led")
	}

	released := time.Now()
	a.stop(t)
	took := waitFor(t, 5*time.Second, "b takes over", b.lease.Leading)
	if d := took.Sub(released); d >= ttl {
		t.Errorf("takeover after a release took %s, want less than the TTL %s", d, ttl)
	}
	if h := holder(t, s, "one"); h != "b" {
		t.Fatalf("holder %q, want b", h)
	}
	_, ended, cause := a.times()
	if len(ended) != 1 || !errors.Is(cause, context.Canceled) {
		t.Fatalf("a's lead ended %d times, cause %v", len(ended), cause)
	}
}

// TestLeaseHolderLosesNATS: a holder cut off from NATS stops acting before
// its lease can expire on the server, and the standby takes over only
// after that, within the TTL and one attempt.
func TestLeaseHolderLosesNATS(t *testing.T) {
	s := natstest.Start(t)
	const ttl = 2 * time.Second
	a := startLease(t, s, "cut", "a", ttl)
	waitFor(t, 5*time.Second, "a leads", a.lease.Leading)
	b := startLease(t, s, "cut", "b", ttl)
	waitFor(t, 5*time.Second, "b stands by", b.lease.Standby)
	fenced := a.lease.JetStream(s.JS)
	if _, err := fenced.PublishMsg(context.Background(), &nats.Msg{Subject: broker.DeploysSubject, Data: []byte("{}")}); err != nil {
		t.Fatalf("the leader's fenced publish: %v", err)
	}

	cut := time.Now()
	a.nc.Close()
	stopped := waitFor(t, 2*ttl, "a stops", func() bool { _, e, _ := a.times(); return len(e) == 1 })
	took := waitFor(t, 3*ttl, "b takes over", b.lease.Leading)
	_, _, cause := a.times()
	if !errors.Is(cause, ErrNotLeader) {
		t.Errorf("a's lead ended with %v, want ErrNotLeader", cause)
	}
	if a.lease.Leading() {
		t.Error("a still says it leads")
	}
	if _, err := fenced.PublishMsg(context.Background(), &nats.Msg{Subject: broker.DeploysSubject, Data: []byte("{}")}); !errors.Is(err, ErrNotLeader) {
		t.Errorf("a fenced publish after the lease was lost: %v, want ErrNotLeader", err)
	}
	bStarted, _, _ := b.times()
	if len(bStarted) != 1 || !bStarted[0].After(stopped) {
		t.Fatalf("b started leading at %v, a stopped at %v", bStarted, stopped)
	}
	if d := stopped.Sub(cut); d > ttl {
		t.Errorf("a stopped %s after losing NATS, want within the TTL %s", d, ttl)
	}
	if d := took.Sub(cut); d > ttl+time.Second {
		t.Errorf("b took over %s after a lost NATS, want within the TTL %s and an attempt", d, ttl)
	}
	t.Logf("a stopped %s after losing NATS; b leads %s after it, %s after a stopped", stopped.Sub(cut).Round(time.Millisecond),
		took.Sub(cut).Round(time.Millisecond), took.Sub(stopped).Round(time.Millisecond))
}

// TestLeaseTakenOver: a holder whose key was rewritten by another process
// (an operator, or a holder that kept acting too long) sees it at its next
// renewal and stops at once.
func TestLeaseTakenOver(t *testing.T) {
	s := natstest.Start(t)
	const ttl = 3 * time.Second
	a := startLease(t, s, "stolen", "a", ttl)
	waitFor(t, 5*time.Second, "a leads", a.lease.Leading)
	kv, err := s.JS.KeyValue(context.Background(), LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "stolen", []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	stolen := time.Now()
	stopped := waitFor(t, ttl, "a stops", func() bool { _, e, _ := a.times(); return len(e) == 1 })
	if d := stopped.Sub(stolen); d > ttl/3+500*time.Millisecond {
		t.Errorf("a stopped %s after its key was rewritten, want within a renewal (%s)", d, ttl/3)
	}
	if a.lease.Leading() {
		t.Error("a still says it leads")
	}
	// It stands by, and leads again once the intruder's key expires.
	// Leading turns true just before the lead function records its start.
	waitFor(t, 3*ttl, "a leads again", func() bool { st, _, _ := a.times(); return a.lease.Leading() && len(st) == 2 })
}

// TestLeaseRenewalReplyLost: a renewal stored whose reply never came (as
// if written by the holder itself) is not a takeover: the holder finds
// its own name at the newer revision and keeps leading.
func TestLeaseRenewalReplyLost(t *testing.T) {
	s := natstest.Start(t)
	const ttl = 3 * time.Second
	a := startLease(t, s, "lost_reply", "a", ttl)
	waitFor(t, 5*time.Second, "a leads", a.lease.Leading)
	kv, err := s.JS.KeyValue(context.Background(), LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "lost_reply")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(context.Background(), "lost_reply", []byte("a"), e.Revision()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl)
	if _, ended, _ := a.times(); len(ended) != 0 || !a.lease.Leading() {
		t.Fatalf("a stopped leading (%d ends) over its own renewal", len(ended))
	}
	if e2, err := kv.Get(context.Background(), "lost_reply"); err != nil || e2.Revision() <= e.Revision()+1 {
		t.Fatalf("a did not renew on the newer revision: %v, %v", e2, err)
	}
}

func TestLeaseName(t *testing.T) {
	s := natstest.Start(t)
	for _, name := range []string{"", "lost-reply", "Correlator", "a.b", "1st"} {
		if _, err := NewLease(context.Background(), s.JS, s.Config, LeaseConfig{TTL: time.Second}, name, "a", nil); err == nil {
			t.Errorf("lease name %q accepted", name)
		}
	}
}

func TestLeaseConfigValidate(t *testing.T) {
	for _, c := range []struct {
		ttl time.Duration
		ok  bool
	}{{10 * time.Second, true}, {time.Second, true}, {500 * time.Millisecond, false}, {0, false}} {
		err := (&LeaseConfig{TTL: c.ttl}).Validate()
		if (err == nil) != c.ok {
			t.Errorf("TTL %s: %v", c.ttl, err)
		}
	}
}

// TestLeasePermissions: the lease works for a NATS user with only the
// correlator's permissions of deploy/README.md, and what it publishes is
// within them (a violation fails the call or closes the connection).
func TestLeasePermissions(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		Users: []*server.User{{Username: "correlator", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"$JS.API.>", "faultline.incidents", "faultline.alerts.>", "faultline.dlq.>",
				"$KV.faultline_alerts_sent.>", "$KV.faultline_leases.>", "$JS.ACK.ALERTS.>"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	violations := make(chan error, 8)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("correlator", "pw"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := NewLease(ctx, js, broker.DefaultConfig(), LeaseConfig{TTL: time.Second}, "correlator", "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	renewed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- l.Run(ctx, func(lctx context.Context) error {
			time.Sleep(time.Second) // three renewals
			close(renewed)
			<-lctx.Done()
			return nil
		})
	}()
	select {
	case <-renewed:
	case <-time.After(10 * time.Second):
		t.Fatal("the lease was not taken")
	}
	if !l.Leading() {
		t.Fatal("lost the lease while renewing it")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		t.Fatalf("permissions: %v", err)
	default:
	}
	kv, err := js.KeyValue(context.Background(), LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), "correlator"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("after the release: %v, want the key gone", err)
	}
}

// TestLeaseLeaderFails: a leader whose work fails releases the lease at
// once, so the standby takes over rather than waiting for the TTL, and
// contends again only a TTL later.
func TestLeaseLeaderFails(t *testing.T) {
	s := natstest.Start(t)
	const ttl = 2 * time.Second
	l, err := NewLease(context.Background(), s.JS, s.Config, LeaseConfig{TTL: ttl}, "fails", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	failed := make(chan time.Time, 1)
	go func() {
		done <- l.Run(ctx, func(context.Context) error {
			select {
			case failed <- time.Now():
				return errors.New("cannot open the alerts bucket")
			default: // the second time: lead until stopped
				<-ctx.Done()
				return nil
			}
		})
	}()
	var at time.Time
	select {
	case at = <-failed:
	case <-time.After(5 * time.Second):
		t.Fatal("a never led")
	}
	b := startLease(t, s, "fails", "b", ttl)
	took := waitFor(t, 5*time.Second, "b takes over", b.lease.Leading)
	if d := took.Sub(at); d >= ttl {
		t.Errorf("b took over %s after a failed, want less than the TTL %s", d, ttl)
	}
	if l.Leading() {
		t.Error("a still says it leads")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

package correlator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/correlate"
)

// LeaseBucket is the JetStream key-value bucket that holds the leases; its
// TTL is the lease TTL, so a key its holder stops renewing disappears.
const LeaseBucket = "faultline_leases"

// LeaseConfig is the correlator lease's part of the settings
// (FAULTLINE_CORRELATOR_LEASE_*).
type LeaseConfig struct {
	TTL time.Duration `envconfig:"TTL" default:"10s" desc:"how long the correlator lease outlives its holder's last renewal: the leader renews every TTL/3 and stops at TTL*3/4 without a renewal, a standby takes over once the TTL has run out; every correlator of a deployment must use the same value"`
}

// Validate checks the settings.
func (c *LeaseConfig) Validate() error {
	if c.TTL < time.Second {
		return fmt.Errorf("FAULTLINE_CORRELATOR_LEASE_TTL: %s, want at least 1s", c.TTL)
	}
	return nil
}

// ErrNotLeader is what a write fenced by a lease returns once the lease is
// no longer held.
var ErrNotLeader = errors.New("not the leader: the correlator lease is not held")

// Lease lets one of several processes act: the key name of LeaseBucket
// holds the identity of the process that may. The holder created it with
// Create (which fails while it exists) and renews it with Update on the
// revision it last wrote (which fails if anyone else wrote since); the
// bucket's TTL removes a key nobody renews, and a standby's next Create
// then succeeds.
//
// The holder never outlives its lease: it measures its own deadline from
// the moment it sent the last successful renewal (before the server stored
// it, so before the server's TTL started), and stops acting at TTL*3/4
// past that moment. The quarter left covers the server's TTL running on
// another clock and what the holder had in flight when it stopped; a
// standby, for its part, cannot take over before the full TTL has run out
// on the server.
type Lease struct {
	kv    jetstream.KeyValue
	key   string
	id    string
	ttl   time.Duration
	renew time.Duration // between renewals
	stop  time.Duration // after the last renewal sent: stop acting
	poll  time.Duration // a standby's attempts, and retries of a failed renewal
	log   *slog.Logger

	mu       sync.Mutex
	state    leaseState
	rev      uint64
	deadline time.Time

	leader    *metrics.Gauge
	takeovers *metrics.Counter
}

type leaseState int

const (
	leaseStarting leaseState = iota // no attempt answered yet
	leaseStandby
	leaseLeading
)

// Identity names this process in a lease: host name and pid.
func Identity() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "unknown-host"
	}
	return h + ":" + strconv.Itoa(os.Getpid())
}

var leaseName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// NewLease opens the lease called name (a key of LeaseBucket, created with
// the TTL if missing) for the process called id. The metrics
// faultline_<name>_leader (1 while leading) and
// faultline_<name>_lease_acquired_total follow it.
func NewLease(ctx context.Context, js jetstream.JetStream, n broker.Config, c LeaseConfig, name, id string, log *slog.Logger) (*Lease, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !leaseName.MatchString(name) {
		return nil, fmt.Errorf("lease name %q: want lower-case letters, digits and _ (it names a key and metrics)", name)
	}
	var kv jetstream.KeyValue
	err := broker.Retry(ctx, log, "bucket "+LeaseBucket, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: LeaseBucket, Description: "leases: which process may act", History: 1,
			TTL: c.TTL, Storage: jetstream.FileStorage, Replicas: n.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	return newLease(kv, name, id, c.TTL, log), nil
}

func newLease(kv jetstream.KeyValue, name, id string, ttl time.Duration, log *slog.Logger) *Lease {
	return &Lease{
		kv: kv, key: name, id: id, ttl: ttl,
		renew: ttl / 3, stop: ttl * 3 / 4, poll: max(ttl/10, 50*time.Millisecond),
		log:       log,
		leader:    metrics.GetOrCreateGauge("faultline_"+name+"_leader", nil),
		takeovers: metrics.GetOrCreateCounter("faultline_" + name + "_lease_acquired_total"),
	}
}

// Leading reports whether this process holds the lease and may act now:
// it is what fenced writes check.
func (l *Lease) Leading() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state == leaseLeading && time.Now().Before(l.deadline)
}

// Standby reports whether another process holds the lease.
func (l *Lease) Standby() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state == leaseStandby
}

// Run waits for the lease, runs lead while it holds it and releases it
// when lead returns, again and again until ctx ends. lead's context ends
// when ctx does or the lease is lost (its cause is then ErrNotLeader);
// lead must stop acting at once and return. An error of lead's own, while
// the lease was held, is logged and releases the lease, and this process
// contends again only after a TTL, so another takes over meanwhile.
func (l *Lease) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	defer l.setState(leaseStandby, 0, time.Time{})
	for {
		if err := l.acquire(ctx); err != nil {
			return nil // ctx ended
		}
		if err := l.hold(ctx, lead); err != nil {
			l.log.Error("leader failed; released the lease, contending again after the TTL", "lease", l.key, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(l.ttl):
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// acquire tries to create the key every poll until it succeeds or ctx ends.
func (l *Lease) acquire(ctx context.Context) error {
	var holder string
	for {
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, l.renew)
		rev, err := l.kv.Create(rctx, l.key, []byte(l.id))
		cancel()
		switch {
		case err == nil:
			l.setState(leaseLeading, rev, sent.Add(l.stop))
			l.leader.Set(1)
			l.takeovers.Inc()
			l.log.Info("took the lease: leading", "lease", l.key, "holder", l.id, "previous", holder, "ttl", l.ttl.String())
			return nil
		case errors.Is(err, jetstream.ErrKeyExists):
			if e, gerr := l.kv.Get(ctx, l.key); gerr == nil && string(e.Value()) != holder {
				holder = string(e.Value())
				l.log.Info("standby: the lease is held by another process", "lease", l.key, "holder", holder, "self", l.id)
			}
			l.setState(leaseStandby, 0, time.Time{})
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			l.log.Warn("lease: cannot reach NATS; standing by", "lease", l.key, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.poll):
		}
	}
}

// hold runs lead, renewing the lease until lead returns, then releases it.
func (l *Lease) hold(ctx context.Context, lead func(ctx context.Context) error) error {
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- lead(lctx) }()

	t := time.NewTimer(l.renew)
	defer t.Stop()
	lost := false
	for {
		select {
		case err := <-done:
			l.leader.Set(0)
			if lost {
				l.setState(leaseStandby, 0, time.Time{})
				l.log.Warn("stopped leading after losing the lease", "lease", l.key, "holder", l.id)
				if err != nil && !errors.Is(err, context.Canceled) {
					l.log.Warn("leader ended with an error", "lease", l.key, "err", err)
				}
				return nil
			}
			l.release()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			return nil
		case <-t.C:
			if lost {
				continue
			}
			next, err := l.renewOnce(ctx)
			if err != nil {
				lost = true
				l.setState(leaseStandby, 0, time.Time{}) // fenced writes fail from now on
				l.leader.Set(0)
				l.log.Error("lost the lease: stopping", "lease", l.key, "holder", l.id, "err", err)
				cancel(ErrNotLeader)
				continue
			}
			t.Reset(next)
		}
	}
}

// renewOnce renews the lease and says when to renew next; an error means
// the lease is lost: taken by another, or not renewed before the deadline.
func (l *Lease) renewOnce(ctx context.Context) (time.Duration, error) {
	l.mu.Lock()
	rev, deadline := l.rev, l.deadline
	l.mu.Unlock()
	left := time.Until(deadline)
	if left <= 0 {
		return 0, fmt.Errorf("not renewed within %s", l.stop)
	}
	sent := time.Now()
	// A graceful shutdown still renews while the leader winds down.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(l.renew, left))
	next, err := l.kv.Update(rctx, l.key, []byte(l.id), rev)
	cancel()
	switch {
	case err == nil:
		l.setState(leaseLeading, next, sent.Add(l.stop))
		return l.renew, nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		// A renewal whose reply was lost may have been stored after all:
		// the key then still names this process, at a later revision.
		// Only this process writes its name, so it renews on that one,
		// its deadline still counted from the last renewal it knows of.
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(time.Until(deadline), time.Millisecond))
		e, gerr := l.kv.Get(gctx, l.key)
		cancel()
		if gerr == nil && string(e.Value()) == l.id && e.Revision() > rev && time.Until(deadline) > 0 {
			l.mu.Lock()
			l.rev = e.Revision()
			l.mu.Unlock()
			return time.Millisecond, nil
		}
		return 0, fmt.Errorf("taken over or expired: %w", err)
	}
	if time.Until(deadline) <= 0 {
		return 0, fmt.Errorf("not renewed within %s: %w", l.stop, err)
	}
	l.log.Warn("renewing the lease failed; retrying", "lease", l.key, "left", time.Until(deadline).Round(time.Millisecond).String(), "err", err)
	return min(l.poll, max(time.Until(deadline), time.Millisecond)), nil
}

// release deletes the key, if it is still this process's, so a standby
// takes over at its next attempt rather than after the TTL.
func (l *Lease) release() {
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	l.setState(leaseStandby, 0, time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev)); err != nil {
		l.log.Warn("releasing the lease failed; it expires after its TTL", "lease", l.key, "err", err)
		return
	}
	l.log.Info("released the lease", "lease", l.key, "holder", l.id)
}

func (l *Lease) setState(s leaseState, rev uint64, deadline time.Time) {
	l.mu.Lock()
	l.state, l.rev, l.deadline = s, rev, deadline
	l.mu.Unlock()
}

// Store returns s with its writes fenced by the lease: once the lease is
// no longer held, they fail with ErrNotLeader.
func (l *Lease) Store(s Store) Store { return fencedStore{s, l} }

type fencedStore struct {
	Store
	l *Lease
}

func (f fencedStore) Write(ctx context.Context, ds []correlate.DeployRow, is []correlate.IncidentRow, ss []correlate.SuspectRow) error {
	if !f.l.Leading() {
		return ErrNotLeader
	}
	return f.Store.Write(ctx, ds, is, ss)
}

func (f fencedStore) Retract(ctx context.Context, ids []string) error {
	if !f.l.Leading() {
		return ErrNotLeader
	}
	return f.Store.Retract(ctx, ids)
}

// JetStream returns js with what the correlator publishes fenced by the
// lease: messages, and writes to the key-value buckets it opens.
func (l *Lease) JetStream(js jetstream.JetStream) jetstream.JetStream { return fencedJS{js, l} }

type fencedJS struct {
	jetstream.JetStream
	l *Lease
}

func (f fencedJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if !f.l.Leading() {
		return nil, ErrNotLeader
	}
	return f.JetStream.PublishMsg(ctx, m, opts...)
}

func (f fencedJS) Publish(ctx context.Context, subj string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if !f.l.Leading() {
		return nil, ErrNotLeader
	}
	return f.JetStream.Publish(ctx, subj, data, opts...)
}

func (f fencedJS) CreateOrUpdateKeyValue(ctx context.Context, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := f.JetStream.CreateOrUpdateKeyValue(ctx, c)
	if err != nil {
		return nil, err
	}
	return fencedKV{kv, f.l}, nil
}

func (f fencedJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	kv, err := f.JetStream.KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return fencedKV{kv, f.l}, nil
}

// CreateOrUpdateObjectStore fences the checkpoint: a former leader must
// not replace the state its successor saves.
func (f fencedJS) CreateOrUpdateObjectStore(ctx context.Context, c jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	st, err := f.JetStream.CreateOrUpdateObjectStore(ctx, c)
	if err != nil {
		return nil, err
	}
	return fencedObjects{st, f.l}, nil
}

type fencedObjects struct {
	jetstream.ObjectStore
	l *Lease
}

func (f fencedObjects) PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error) {
	if !f.l.Leading() {
		return nil, ErrNotLeader
	}
	return f.ObjectStore.PutBytes(ctx, name, data)
}

func (f fencedObjects) Delete(ctx context.Context, name string) error {
	if !f.l.Leading() {
		return ErrNotLeader
	}
	return f.ObjectStore.Delete(ctx, name)
}

type fencedKV struct {
	jetstream.KeyValue
	l *Lease
}

func (f fencedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if !f.l.Leading() {
		return 0, ErrNotLeader
	}
	return f.KeyValue.Put(ctx, key, value)
}

func (f fencedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if !f.l.Leading() {
		return 0, ErrNotLeader
	}
	return f.KeyValue.Create(ctx, key, value, opts...)
}

func (f fencedKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if !f.l.Leading() {
		return 0, ErrNotLeader
	}
	return f.KeyValue.Update(ctx, key, value, rev)
}

func (f fencedKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if !f.l.Leading() {
		return ErrNotLeader
	}
	return f.KeyValue.Delete(ctx, key, opts...)
}

func (f fencedKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if !f.l.Leading() {
		return ErrNotLeader
	}
	return f.KeyValue.Purge(ctx, key, opts...)
}

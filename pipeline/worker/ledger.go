package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
)

// entry is one batch in the ledger: exactly which stream messages it
// holds, and how far it got.
type entry struct {
	Stream string   `json:"stream"`
	Seqs   []uint64 `json:"seqs"` // ascending
	Since  int64    `json:"since"`
	// State is claiming while the batch claims its messages (Seqs are
	// then candidates), abandoned once another batch took it over (never
	// inserted, its claims free to take), and empty once it owns every
	// message in Seqs: only then may it be inserted, by whichever worker
	// re-forms it, always under its token. Claiming moves to owned or
	// abandoned by compare-and-set on the entry's revision, so of a stalled
	// worker and the one that gives its batch up, exactly one wins.
	State string `json:"state,omitempty"`
}

const (
	stateOwned     = ""
	stateClaiming  = "claiming"
	stateAbandoned = "abandoned"
)

// newBatchToken names a batch: random, since messages are owned by one
// batch at a time through their claims, and a re-formed batch reads its
// token from its entry.
func newBatchToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ledger is the KV bucket of in-flight batches, mirrored in memory by a
// watch so a redelivered message is matched to its batch without a round
// trip. Beside each batch's entry (key: its token) it holds a claim per
// message (claimAll).
type ledger struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream // the bucket's stream, to drop claims in bulk

	mu      sync.Mutex
	bySeq   map[uint64]string // stream seq -> token of the batch owning it
	entries map[string]entry  // token -> entry
	purged  uint64            // claim groups below this one are dropped
}

// Claims are grouped by stream sequence, 1024 to a group, so that those
// below the ack floor go with one purge per group rather than one request
// per message.
const claimGroupBits = 10

func claimKey(seq uint64) string {
	return "claim." + strconv.FormatUint(seq>>claimGroupBits, 10) + "." + strconv.FormatUint(seq, 10)
}

func openLedger(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*ledger, error) {
	var kv jetstream.KeyValue
	err := broker.Retry(ctx, nil, "bucket "+bucket, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "faultline in-flight insert batches (exactly-once ledger)",
			History:     1,
			// Entries live minutes; the TTL only bounds the delete markers.
			TTL:      24 * time.Hour,
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger bucket %s: %w", bucket, err)
	}
	var st jetstream.Stream
	err = broker.Retry(ctx, nil, "bucket stream KV_"+bucket, func(ctx context.Context) (err error) {
		st, err = js.Stream(ctx, "KV_"+bucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger bucket %s: %w", bucket, err)
	}
	return &ledger{kv: kv, stream: st, bySeq: map[uint64]string{}, entries: map[string]entry{}}, nil
}

// watch keeps the in-memory index current until ctx ends; it returns once
// the initial contents are loaded.
func (l *ledger) watch(ctx context.Context) (done <-chan struct{}, err error) {
	// Entries only: a token is one key token, a claim three.
	w, err := l.kv.Watch(ctx, "*")
	if err != nil {
		return nil, fmt.Errorf("watch ledger: %w", err)
	}
	loaded := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer w.Stop()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case kve, ok := <-w.Updates():
				if !ok {
					return
				}
				if kve == nil {
					if initial {
						initial = false
						close(loaded)
					}
					continue
				}
				l.apply(kve)
			}
		}
	}()
	select {
	case <-loaded:
		return finished, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, errors.New("watch ledger: initial load timed out")
	}
}

func (l *ledger) apply(kve jetstream.KeyValueEntry) {
	token := kve.Key()
	if kve.Operation() != jetstream.KeyValuePut {
		l.forget(token)
		return
	}
	var e entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return // not ours; never fatal
	}
	l.remember(token, e)
}

func (l *ledger) remember(token string, e entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[token] = e
	if e.State != stateOwned {
		return // a redelivered message is re-formed only into its owner
	}
	for _, s := range e.Seqs {
		l.bySeq[s] = token
	}
}

func (l *ledger) forget(token string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[token]
	if !ok {
		return
	}
	delete(l.entries, token)
	for _, s := range e.Seqs {
		if l.bySeq[s] == token {
			delete(l.bySeq, s)
		}
	}
}

// lookup returns the batch that owns a stream sequence.
func (l *ledger) lookup(seq uint64) (string, entry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.bySeq[seq]
	if !ok {
		return "", entry{}, false
	}
	return t, l.entries[t], true
}

// begin records a new batch as claiming its candidate messages and
// returns the entry's revision.
func (l *ledger) begin(ctx context.Context, token string, e entry) (uint64, error) {
	e.State = stateClaiming
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	rev, err := l.kv.Create(ctx, token, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// The token is random: an entry under it is this batch's, from
		// an attempt whose reply was lost.
		var cur entry
		if rev, cur, err = l.read(ctx, token); err == nil && cur.State != stateClaiming {
			return 0, errBatchLost
		}
	}
	if err != nil {
		return 0, fmt.Errorf("record batch %s: %w", token, err)
	}
	l.remember(token, e)
	return rev, nil
}

// read returns a batch's entry as the bucket holds it now.
func (l *ledger) read(ctx context.Context, token string) (uint64, entry, error) {
	kve, err := l.kv.Get(ctx, token)
	if err != nil {
		return 0, entry{}, err
	}
	var e entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return 0, entry{}, fmt.Errorf("batch %s: %w", token, err)
	}
	return kve.Revision(), e, nil
}

// errBatchLost says a claiming batch was given up by another worker
// while this one stalled: it must not be inserted.
var errBatchLost = errors.New("batch given up by another worker")

// own turns a claiming batch into the owner of the messages it claimed,
// if nobody gave it up meanwhile (errBatchLost).
func (l *ledger) own(ctx context.Context, token string, e entry, rev uint64) error {
	e.State = stateOwned
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := l.kv.Update(ctx, token, b, rev); err != nil {
		if !revisionChanged(err) {
			return fmt.Errorf("own batch %s: %w", token, err)
		}
		// Changed since rev: given up by another worker, or owned by
		// this one in an attempt whose reply was lost.
		_, cur, rerr := l.read(ctx, token)
		switch {
		case errors.Is(rerr, jetstream.ErrKeyNotFound):
			return errBatchLost
		case rerr != nil:
			return fmt.Errorf("own batch %s: %w", token, rerr)
		case cur.State != stateOwned:
			return errBatchLost
		}
	}
	l.remember(token, e)
	return nil
}

// claimAll claims every candidate sequence for token: a KV create of
// claim.<group>.<seq> with the token as value. A claim held by an
// abandoned batch is taken over; one held by a batch still claiming (its
// worker stalled or died: JetStream redelivered the message after the ack
// wait) is taken over after that batch is abandoned by compare-and-set.
// A claim held by an owning batch, or whose batch is gone (done and
// released), stays with it. It returns the sequences now held for token.
func (l *ledger) claimAll(ctx context.Context, token string, seqs []uint64) (held []uint64, err error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	sem := make(chan struct{}, 32)
	for _, seq := range seqs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ok, err := l.claimOne(ctx, token, seq)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case ok:
				held = append(held, seq)
			}
		}()
	}
	wg.Wait()
	slices.Sort(held)
	return held, errors.Join(errs...)
}

// claimOne claims one sequence; false means another batch holds it.
func (l *ledger) claimOne(ctx context.Context, token string, seq uint64) (bool, error) {
	key := claimKey(seq)
	for range 5 {
		_, err := l.kv.Create(ctx, key, []byte(token))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("claim %d: %w", seq, err)
		}
		cur, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // dropped meanwhile: try again
		}
		if err != nil {
			return false, fmt.Errorf("claim %d: %w", seq, err)
		}
		holder := string(cur.Value())
		if holder == token {
			return true, nil // ours already (a retry)
		}
		free, err := l.giveUp(ctx, holder)
		if err != nil {
			return false, fmt.Errorf("claim %d: %w", seq, err)
		}
		if !free {
			return false, nil
		}
		if _, err := l.kv.Update(ctx, key, []byte(token), cur.Revision()); err == nil {
			return true, nil
		} else if !revisionChanged(err) {
			return false, fmt.Errorf("claim %d: %w", seq, err)
		}
		// Taken meanwhile: look again.
	}
	return false, fmt.Errorf("claim %d: contended", seq)
}

// holds tells whether token holds the claim on seq.
func (l *ledger) holds(ctx context.Context, token string, seq uint64) bool {
	kve, err := l.kv.Get(ctx, claimKey(seq))
	return err == nil && string(kve.Value()) == token
}

// giveUp tells whether holder's claims are free to take: its batch is
// abandoned, or was claiming and is now abandoned by this call. A batch
// that owns its messages, or is gone, keeps them.
func (l *ledger) giveUp(ctx context.Context, holder string) (bool, error) {
	for range 5 {
		rev, e, err := l.read(ctx, holder)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		switch e.State {
		case stateAbandoned:
			return true, nil
		case stateClaiming:
			e.State = stateAbandoned
			b, err := json.Marshal(e)
			if err != nil {
				return false, err
			}
			if _, err := l.kv.Update(ctx, holder, b, rev); err == nil {
				return true, nil
			} else if !revisionChanged(err) {
				return false, err
			}
			// Changed meanwhile (owned, or abandoned by another): look again.
		default:
			return false, nil
		}
	}
	return false, fmt.Errorf("batch %s: contended", holder)
}

// release removes an entry whose messages are all confirmed acked (or
// that holds nothing). Claims stay until the ack floor passes them.
func (l *ledger) release(ctx context.Context, token string) error {
	l.forget(token)
	if err := l.kv.Purge(ctx, token); err != nil {
		return fmt.Errorf("release batch %s: %w", token, err)
	}
	return nil
}

// collect releases entries entirely at or below the consumer's ack floor
// (every message in them is acked, so none can come back) and drops the
// claim groups wholly below it.
func (l *ledger) collect(ctx context.Context, ackFloor uint64) int {
	l.mu.Lock()
	var done []string
	for t, e := range l.entries {
		if len(e.Seqs) > 0 && slices.Max(e.Seqs) <= ackFloor {
			done = append(done, t)
		}
	}
	l.mu.Unlock()
	for _, t := range done {
		_ = l.release(ctx, t)
	}
	l.purgeClaims(ctx, ackFloor)
	return len(done)
}

// purgeClaims drops the claim groups whose every sequence is at or below
// the ack floor: those messages are acked and can only come back to a
// worker that stalled with them, which finds them below the floor. A
// process starts a few groups below the floor it first sees; anything
// older that a crash left behind goes with the bucket's TTL.
func (l *ledger) purgeClaims(ctx context.Context, ackFloor uint64) {
	below := (ackFloor + 1) >> claimGroupBits // groups < below are wholly acked
	if l.purged == 0 && below > 16 {
		l.purged = below - 16
	}
	for ; l.purged < below; l.purged++ {
		subj := "$KV." + l.kv.Bucket() + ".claim." + strconv.FormatUint(l.purged, 10) + ".>"
		if err := l.stream.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return // next time
		}
	}
}

// revisionChanged tells a compare-and-set that lost (the key moved past
// the revision) from a failure: a replicated bucket reports it with
// another code than a single server, and nats.go maps both to
// ErrKeyRevisionMismatch.
func revisionChanged(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}

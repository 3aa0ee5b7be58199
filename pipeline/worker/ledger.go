package worker

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
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

// entry is one in-flight batch in the ledger: exactly which stream
// messages it holds.
type entry struct {
	Stream string   `json:"stream"`
	Seqs   []uint64 `json:"seqs"` // ascending
	Since  int64    `json:"since"`
	// Inserted marks a batch whose insert ClickHouse confirmed: a
	// re-formed one is inserted again under its token (and dropped there)
	// without claiming anything.
	Inserted bool `json:"inserted,omitempty"`
	// Abandoned marks a batch that lost a claim to another batch before
	// it was inserted: it never will be, and its messages are batched
	// afresh when they come back.
	Abandoned bool `json:"abandoned,omitempty"`
}

// batchToken is the identity of a batch: a hash of its stream and the
// sorted sequences it holds. The same messages always give the same token,
// whichever worker forms the batch and in whatever order they arrived.
func batchToken(stream string, seqs []uint64) string {
	h := sha256.New()
	h.Write([]byte(stream))
	var b [8]byte
	for _, s := range seqs {
		binary.BigEndian.PutUint64(b[:], s)
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// ledger is the KV bucket of in-flight batches, mirrored in memory by a
// watch so a redelivered message is matched to its batch without a round
// trip. Beside each batch's entry (key: its token) it holds one claim per
// message (see claimAll), so that no message is ever in two batches that
// both reach ClickHouse, however long a worker stalls.
type ledger struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream // the bucket's stream, to drop claims in bulk

	mu      sync.Mutex
	bySeq   map[uint64]string // stream seq -> token
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
	// Entries only: a token is one key token, a claim two.
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

// lookup returns the batch a stream sequence was last recorded in.
func (l *ledger) lookup(seq uint64) (string, entry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.bySeq[seq]
	if !ok {
		return "", entry{}, false
	}
	return t, l.entries[t], true
}

// record writes the entry before its insert. Put, not Create: a replay
// records the same entry again.
func (l *ledger) record(ctx context.Context, token string, e entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := l.kv.Put(ctx, token, b); err != nil {
		return fmt.Errorf("record batch %s: %w", token, err)
	}
	l.remember(token, e)
	return nil
}

// claimAll claims every sequence for token: key claim.<group>.<seq>,
// value the token, created where there is none. A batch is inserted only
// once it holds the claims of all its messages, and a claim changes hands
// only when its batch is abandoned (never inserted) or split (to its
// parts, from). Claims stay after the batch is acked, until the
// consumer's ack floor passes their group (collect): a worker that wakes
// from a stall with a message another batch stored and acked finds the
// claim taken, or, once it is dropped, the message below the ack floor.
// It returns the sequences another batch holds.
func (l *ledger) claimAll(ctx context.Context, token, from string, seqs []uint64) (taken []uint64, err error) {
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
			ok, err := l.claimOne(ctx, token, from, seq)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case !ok:
				taken = append(taken, seq)
			}
		}()
	}
	wg.Wait()
	slices.Sort(taken)
	return taken, errors.Join(errs...)
}

// claimOne claims one sequence; false means another batch holds it.
func (l *ledger) claimOne(ctx context.Context, token, from string, seq uint64) (bool, error) {
	key := claimKey(seq)
	for range 3 {
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
		switch holder := string(cur.Value()); {
		case holder == token: // ours already (a retry, or the batch re-formed)
			return true, nil
		case holder == from && from != "", l.abandoned(holder):
			_, err := l.kv.Update(ctx, key, []byte(token), cur.Revision())
			if err == nil {
				return true, nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return false, fmt.Errorf("claim %d: %w", seq, err)
			}
			// Changed meanwhile: look again.
		default:
			return false, nil
		}
	}
	return false, fmt.Errorf("claim %d: contended", seq)
}

// abandoned tells whether token's batch is known to be abandoned.
func (l *ledger) abandoned(token string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries[token].Abandoned
}

// current reads a batch's entry from the bucket itself, not the watched
// copy: whether it was inserted decides how it is re-formed.
func (l *ledger) current(ctx context.Context, token string) (entry, bool, error) {
	kve, err := l.kv.Get(ctx, token)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return entry{}, false, nil
	}
	if err != nil {
		return entry{}, false, err
	}
	var e entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return entry{}, false, fmt.Errorf("batch %s: %w", token, err)
	}
	return e, true, nil
}

// release removes an entry whose messages are all confirmed acked. Its
// claims stay until the ack floor passes them.
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
// the ack floor. A process starts a few groups below the floor it first
// sees; anything older a crash left behind goes with the bucket's TTL.
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

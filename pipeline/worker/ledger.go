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
// trip.
type ledger struct {
	kv jetstream.KeyValue

	mu      sync.Mutex
	bySeq   map[uint64]string // stream seq -> token
	entries map[string]entry  // token -> entry
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
	return &ledger{kv: kv, bySeq: map[uint64]string{}, entries: map[string]entry{}}, nil
}

// watch keeps the in-memory index current until ctx ends; it returns once
// the initial contents are loaded.
func (l *ledger) watch(ctx context.Context) (done <-chan struct{}, err error) {
	w, err := l.kv.WatchAll(ctx)
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

// release removes an entry whose messages are all confirmed acked.
func (l *ledger) release(ctx context.Context, token string) error {
	l.forget(token)
	if err := l.kv.Purge(ctx, token); err != nil {
		return fmt.Errorf("release batch %s: %w", token, err)
	}
	return nil
}

// collect releases entries entirely at or below the consumer's ack floor:
// every message in them is acked, so none can come back.
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
	return len(done)
}

package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/deploys"
	"github.com/faultline-dev/faultline/processors/enrich"
	"github.com/faultline-dev/faultline/processors/events"
	"github.com/faultline-dev/faultline/processors/otlp"
)

// LiveDeploys keeps every worker's view of the deploys: it reads the deploy
// events from the start of the EVENTS stream and follows it,
// so any number of workers share the same view without a store of their
// own, and a restarted worker rebuilds it in moments.
type LiveDeploys struct {
	mu      sync.RWMutex
	idx     *deploys.Index
	cons    jetstream.Consumer
	applied atomic.Uint64 // stream sequence of the last event applied
}

// FollowDeploys starts following deploy events until ctx ends.
func FollowDeploys(ctx context.Context, js jetstream.JetStream, n broker.Config) (*LiveDeploys, error) {
	l := &LiveDeploys{idx: deploys.NewIndex()}
	cons, err := js.OrderedConsumer(ctx, n.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{broker.DeploysSubject}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("follow deploys: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if meta, err := m.Metadata(); err == nil {
			defer l.applied.Store(meta.Sequence.Stream)
		}
		var e events.Deploy
		if json.Unmarshal(m.Data(), &e) != nil {
			return
		}
		d := deploys.Deploy{ID: e.ID, Service: e.Service, Environment: e.Environment, Version: e.Version, Type: e.Type, Status: e.Status, At: e.Timestamp}
		l.mu.Lock()
		l.idx.Add(d)
		l.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("follow deploys: %w", err)
	}
	l.cons = cons
	go func() { <-ctx.Done(); cc.Stop() }()
	return l, nil
}

// catchUp waits, briefly, until every deploy event already stored has been
// applied, so a batch is stamped with the deploys published before it.
func (l *LiveDeploys) catchUp() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		info, err := l.cons.Info(ctx)
		if err != nil || (info.NumPending == 0 && l.applied.Load() >= info.Delivered.Stream) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Prepare stamps a batch's rows with the deploy live at each row's time, as
// far as it is known now. (The incident a row falls in is read through the
// incident_spans dictionary, not stamped.)
func (l *LiveDeploys) Prepare(b *otlp.Batch) {
	l.catchUp()
	l.mu.RLock()
	enrich.Fill(b, l.idx)
	l.mu.RUnlock()
}

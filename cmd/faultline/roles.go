package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/faultline-dev/faultline/pipeline/correlator"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/pipeline/notify"
	"github.com/faultline-dev/faultline/pipeline/worker"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/webhook"
)

// group runs the long-lived parts of a role and stops them together.
type group struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
}

func (g *group) Go(name string, f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.mu.Lock()
			g.errs = append(g.errs, fmt.Errorf("%s: %w", name, err))
			g.mu.Unlock()
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	if len(g.errs) > 0 {
		return g.errs[0]
	}
	return nil
}

// startWorker runs the telemetry worker until ctx ends; it drains its
// in-flight batch before returning.
func startWorker(ctx context.Context, s *stack, g *group) error {
	tw, err := clickhouse.NewTelemetryWriter(ctx, s.cfg.ClickHouse)
	if err != nil {
		return err
	}
	s.onStop(func(context.Context) { tw.Close() })
	live, err := worker.FollowDeploys(ctx, s.js, s.cfg.NATS)
	if err != nil {
		return err
	}
	o := worker.Options{
		Prepare:     live.Prepare,
		Config:      s.cfg.Worker,
		NATS:        s.cfg.NATS,
		Sink:        tw,
		IsPermanent: clickhouse.IsPermanent,
		Log:         s.log.With("component", "worker"),
	}
	if s.cfg.Worker.Aggregates {
		o.Committed = correlator.AggregatesHook(s.js, s.cfg.Correlator.Rules())
	}
	w, err := worker.New(s.js, o)
	if err != nil {
		return err
	}
	g.Go("worker", func() error { return w.Run(ctx) })
	return nil
}

// startGateway serves the gateway until the stack stops; shutdown stops
// accepting first and waits for requests in flight.
func startGateway(s *stack) error {
	g, err := gateway.New(s.cfg.Gateway, s.js, s.cfg.NATS, s.log.With("component", "gateway"))
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		return err
	}
	s.gateway = g
	s.onStop(func(ctx context.Context) { _ = g.Shutdown(ctx) })
	return nil
}

// startCorrelator runs the correlator until ctx ends, while this process
// holds the correlator lease: of several correlator processes on one NATS,
// one leads and the others stand by, each ready to take over once the
// leader stops renewing the lease. A standby is ready (it is healthy and
// waits by design); a leader is not ready until its correlator has caught
// up with its streams.
func startCorrelator(ctx context.Context, s *stack, g *group) error {
	ew, err := clickhouse.NewEventsWriter(s.ch, s.cfg.ClickHouse)
	if err != nil {
		return err
	}
	log := s.log.With("component", "correlator")
	lease, err := correlator.NewLease(ctx, s.js, s.cfg.NATS, s.cfg.Lease, "correlator", correlator.Identity(), log)
	if err != nil {
		return err
	}
	var cur atomic.Pointer[correlator.Correlator]
	// Not ready while it replays its streams: until then a new incident
	// waits behind the history for its verdict.
	s.admin.AddCheck("correlator", func(ctx context.Context) error {
		switch c := cur.Load(); {
		case lease.Leading() && c != nil:
			return c.Ready(ctx)
		case lease.Standby():
			return nil
		}
		return errors.New("starting: waiting for the lease")
	})
	g.Go("correlator", func() error {
		return lease.Run(ctx, func(ctx context.Context) error {
			// A fresh correlator each time the lease is taken: it
			// rebuilds its state from the streams. Everything it writes
			// goes through the lease's fence.
			c := correlator.New(s.cfg.Correlator, lease.JetStream(s.js), s.cfg.NATS, lease.Store(ew), log)
			cur.Store(c)
			return c.Run(ctx)
		})
	})
	return nil
}

// startNotifier delivers alert webhooks to the configured targets, if any.
func startNotifier(ctx context.Context, s *stack, g *group) error {
	targets, err := s.cfg.Webhook.Targets()
	if err != nil || len(targets) == 0 {
		return err
	}
	n := notify.New(s.js, s.cfg.NATS, targets, webhook.NewClient(s.cfg.Webhook.BaseURL), s.log.With("component", "notifier"))
	g.Go("notifier", func() error { return n.Run(ctx) })
	s.log.Info("webhook targets", "count", len(targets))
	return nil
}

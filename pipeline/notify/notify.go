// Package notify takes alert events from the ALERTS stream to webhook
// targets.
//
// Each target has its own durable consumer, so a slow or failing target
// never delays another, and its own place in the stream survives restarts.
// A target's consumer has one delivery in flight (MaxAckPending 1): alerts
// reach a receiver in the order they were raised. A failed delivery that may
// pass (network error, 5xx, 429) is retried with exponential backoff and
// jitter (honouring Retry-After) through NakWithDelay, so the retry
// schedule survives a restart too; once the event is older than the
// target's max age, or at once for any other 4xx, it goes to
// faultline.dlq.webhook with the target and last error in headers.
// Receivers drop the rare repeat (a crash between delivery and ack) by
// webhook-id (the event id; PagerDuty targets by dedup key).
//
// Every correlator process runs a notifier, the standbys too: they share
// each target's durable consumer, and MaxAckPending 1 lets one of them at
// a time hold the target's next alert. A delivery under way when its
// process is killed is delivered again by another after the ack wait
// (the target's timeout and 30s); the receiver saw it twice only if it
// answered before the crash and the ack did not reach the server.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/alert"
	"github.com/faultline-dev/faultline/sinks/webhook"
)

// Publish stores an alert on faultline.alerts.<type>, deduplicated by id,
// and waits for JetStream's ack.
func Publish(ctx context.Context, js jetstream.JetStream, ev alert.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	m := nats.NewMsg(broker.AlertsPrefix + "." + ev.Type)
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, ev.ID)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish alert %s: %w", ev.ID, err)
	}
	return nil
}

// Sender delivers one event to one target.
type Sender interface {
	Deliver(ctx context.Context, t *webhook.Target, ev *alert.Event) error
}

// Notifier runs one consumer per target.
type Notifier struct {
	js      jetstream.JetStream
	nats    broker.Config
	targets []webhook.Target
	send    Sender
	log     *slog.Logger
	// Backoff bounds (tests shorten them).
	MinDelay, MaxDelay time.Duration
}

// New prepares a notifier.
func New(js jetstream.JetStream, n broker.Config, targets []webhook.Target, send Sender, log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{js: js, nats: n, targets: targets, send: send, log: log, MinDelay: time.Second, MaxDelay: 5 * time.Minute}
}

// Run delivers until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(n.targets))
	for i := range n.targets {
		t := &n.targets[i]
		var cons jetstream.Consumer
		err := broker.Retry(ctx, n.log, "consumer faultline-webhook-"+t.Name, func(ctx context.Context) (err error) {
			cons, err = n.js.CreateOrUpdateConsumer(ctx, n.nats.AlertsStream, jetstream.ConsumerConfig{
				Durable:       "faultline-webhook-" + t.Name,
				Description:   "webhook deliveries to " + t.Name,
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       time.Duration(t.Timeout) + 30*time.Second,
				MaxAckPending: 1,
				MaxDeliver:    -1,
				DeliverPolicy: jetstream.DeliverAllPolicy,
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("webhook consumer for %s: %w", t.Name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.serve(ctx, t, cons); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// serve pulls the target's alerts one at a time. Each pull is a fresh
// one-message request sent after the previous alert was acked, nacked or
// terminated, with a short expiry: a long-lived pull iterator can be left
// without a request the server still holds (seen under load with
// MaxAckPending 1: nothing waiting, one alert pending, for good), and a
// request that lapses is simply sent again.
func (n *Notifier) serve(ctx context.Context, t *webhook.Target, cons jetstream.Consumer) error {
	m := newTargetMetrics(t.Name)
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, pullWait)
		batch, err := cons.Fetch(1, jetstream.FetchContext(pctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			n.log.Warn("webhook consumer", "target", t.Name, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for msg := range batch.Messages() {
			n.handle(ctx, t, msg, m)
		}
		cancel()
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			n.log.Warn("webhook consumer", "target", t.Name, "err", err)
			sleep(ctx, time.Second)
		}
	}
	return nil
}

// pullWait bounds one pull request: an idle target asks again this often.
const pullWait = 5 * time.Second

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (n *Notifier) handle(ctx context.Context, t *webhook.Target, msg jetstream.Msg, m *targetMetrics) {
	var ev alert.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		n.deadLetter(ctx, t, msg, "undecodable alert: "+err.Error())
		return
	}
	if !t.Wants(&ev) {
		_ = msg.Ack()
		return
	}
	meta, _ := msg.Metadata()
	// A delivery begun is finished (within the target's timeout) even when
	// the process is stopping: cut off, the receiver might have it while
	// the stream would send it again.
	err := n.send.Deliver(context.WithoutCancel(ctx), t, &ev)
	if err == nil {
		// Acked at once, and the server's receipt awaited: from the
		// receiver's 2xx to this ack is the only window in which a crash
		// delivers the alert twice (to the same webhook-id).
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := msg.DoubleAck(actx); err != nil {
			n.log.Warn("webhook delivered but its ack was not confirmed; it may be delivered again", "target", t.Name, "alert", ev.ID, "err", err)
		}
		cancel()
		m.delivered.Inc()
		if meta != nil {
			m.sinceStored.UpdateDuration(meta.Timestamp)
		}
		m.sinceEvent.UpdateDuration(ev.Time)
		return
	}
	var we *webhook.Error
	retryable := errors.As(err, &we) && we.Retryable
	stored := time.Now()
	delivered := uint64(1)
	if meta != nil {
		stored, delivered = meta.Timestamp, meta.NumDelivered
	}
	if !retryable || time.Since(stored) > time.Duration(t.MaxAge) {
		m.failed.Inc()
		n.deadLetter(ctx, t, msg, err.Error())
		return
	}
	delay := n.backoff(delivered)
	if we != nil && we.RetryAfter > delay {
		delay = we.RetryAfter
	}
	m.retried.Inc()
	n.log.Warn("webhook delivery failed; retrying", "target", t.Name, "alert", ev.ID, "attempt", delivered, "in", delay, "err", err)
	_ = msg.NakWithDelay(delay)
}

// backoff is exponential with full jitter: up to MinDelay * 2^(attempt-1),
// capped at MaxDelay.
func (n *Notifier) backoff(attempt uint64) time.Duration {
	d := n.MinDelay << min(attempt-1, 20)
	if d <= 0 || d > n.MaxDelay {
		d = n.MaxDelay
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func (n *Notifier) deadLetter(ctx context.Context, t *webhook.Target, msg jetstream.Msg, reason string) {
	meta, _ := msg.Metadata()
	var seq uint64
	if meta != nil {
		seq = meta.Sequence.Stream
	}
	hdr := nats.Header{broker.HeaderTarget: {t.Name}}
	for k, v := range msg.Headers() {
		hdr[k] = v
	}
	n.log.Error("webhook delivery given up; dead-lettered", "target", t.Name, "seq", seq, "err", reason)
	if err := broker.DeadLetter(ctx, n.js, "webhook", "target "+t.Name+": "+reason, n.nats.AlertsStream, seq, msg.Subject(), hdr, msg.Data()); err != nil {
		_ = msg.NakWithDelay(10 * time.Second)
		return
	}
	_ = msg.Term()
}

type targetMetrics struct {
	delivered, retried, failed *metrics.Counter
	sinceEvent, sinceStored    *metrics.PrometheusHistogram
}

func newTargetMetrics(name string) *targetMetrics {
	l := `{target="` + name + `"}`
	return &targetMetrics{
		delivered:   metrics.GetOrCreateCounter("faultline_webhook_delivered_total" + l),
		retried:     metrics.GetOrCreateCounter("faultline_webhook_retried_total" + l),
		failed:      metrics.GetOrCreateCounter("faultline_webhook_failed_total" + l),
		sinceEvent:  metrics.GetOrCreatePrometheusHistogram("faultline_webhook_latency_from_event_seconds" + l),
		sinceStored: metrics.GetOrCreatePrometheusHistogram("faultline_webhook_latency_seconds" + l),
	}
}

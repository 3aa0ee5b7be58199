package correlator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"
)

// catchUp is how far the correlator has read its streams. At start it
// replays both from their beginning; until it has read them it judges the
// past, so an incident opening now waits for its verdict behind hours of
// history. Ready tells /readyz, and the gauges let operators watch the lag
// at any time. Run writes it; Ready and the metrics read it from other
// goroutines.
type catchUp struct {
	started atomic.Bool
	// Messages of each stream after the last one the correlator handled.
	events, aggregates atomic.Uint64
	// Telemetry messages whose aggregates wait in the reorder buffer.
	held     atomic.Int64
	caughtUp atomic.Bool
	begun    time.Time // Run's goroutine only

	mEvents, mAggregates, mWatermark *metrics.Gauge
}

// startCatchUp records what the streams held when the correlator began
// to follow them.
func (c *Correlator) startCatchUp(evs, aggs follower) {
	l := &c.lag
	l.mEvents = lagGauge(c.nats.EventsStream)
	l.mAggregates = lagGauge(c.nats.AggregatesStream)
	l.mWatermark = metrics.GetOrCreateGauge("faultline_correlator_watermark_lag_seconds", nil)
	l.begun = time.Now()
	l.setLag(&l.events, l.mEvents, evs.backlog)
	l.setLag(&l.aggregates, l.mAggregates, aggs.backlog)
	l.started.Store(true)
}

// lagGauge is the gauge of a stream's messages not yet handled.
func lagGauge(stream string) *metrics.Gauge {
	return metrics.GetOrCreateGauge("faultline_correlator_lag_messages{stream="+strconv.Quote(stream)+"}", nil)
}

func (l *catchUp) setLag(v *atomic.Uint64, g *metrics.Gauge, n uint64) {
	v.Store(n)
	g.Set(float64(n))
}

// handledEvent and handledAggregates record a message the Run loop has
// handled: JetStream tells with each message how many follow it.
func (c *Correlator) handledEvent(m jetstream.Msg) {
	if meta, err := m.Metadata(); err == nil {
		c.evSeq = meta.Sequence.Stream
		c.lag.setLag(&c.lag.events, c.lag.mEvents, meta.NumPending)
	}
}

func (c *Correlator) handledAggregates(m jetstream.Msg) {
	if meta, err := m.Metadata(); err == nil {
		c.aggSeq = meta.Sequence.Stream
		c.lag.setLag(&c.lag.aggregates, c.lag.mAggregates, meta.NumPending)
	}
	// At once, not at the next tick: a slow flush must not hide a gap
	// waited for from readiness.
	c.lag.held.Store(int64(len(c.pending)))
}

// noteProgress runs on every tick, after the flush: the correlator has
// caught up once nothing of either stream is left to handle, none is
// waiting in the channels, and the reorder buffer is empty. Readiness then
// stays: later lag is the gauges' to show, and a gap waited for in live
// operation must not take the process out of service.
func (c *Correlator) noteProgress(evs, aggs follower) {
	l := &c.lag
	l.held.Store(int64(len(c.pending)))
	if wm := c.det.Watermark(); !wm.IsZero() {
		l.mWatermark.Set(time.Since(wm).Seconds())
	}
	if l.caughtUp.Load() {
		return
	}
	if l.events.Load() == 0 && l.aggregates.Load() == 0 && len(c.pending) == 0 && len(evs.ch) == 0 && len(aggs.ch) == 0 {
		l.caughtUp.Store(true)
		c.log.Info("caught up with the streams", "after", time.Since(l.begun).Round(time.Millisecond).String())
	}
}

// Ready is the correlator's readiness check (admin.Check): not ready until
// it has caught up with the EVENTS and AGGREGATES streams after a start.
func (c *Correlator) Ready(context.Context) error {
	l := &c.lag
	switch {
	case l.caughtUp.Load():
		return nil
	case !l.started.Load():
		return errors.New("starting")
	}
	behind := l.events.Load() + l.aggregates.Load()
	if held := l.held.Load(); behind == 0 && held > 0 {
		return fmt.Errorf("catching up, 0 messages behind, the aggregates of %d telemetry messages held for stream order", held)
	}
	return fmt.Errorf("catching up, %d messages behind", behind)
}

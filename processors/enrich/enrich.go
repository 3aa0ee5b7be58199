// Package enrich stamps every telemetry row with the release that was live
// for its service and environment at the row's own timestamp (DeployId,
// DeployVersion), from a deploy index.
//
// Rows of one resource share service and environment and mostly move
// forward in time, so the last answer and the span it holds for are kept:
// most rows cost two string compares and two integer compares.
package enrich

import (
	"time"

	"github.com/faultline-dev/faultline/processors/deploys"
	"github.com/faultline-dev/faultline/processors/otlp"
)

type cache struct {
	service, env string
	from, until  int64 // unix nanoseconds
	id, version  string
	valid        bool
}

// Fill sets DeployId and DeployVersion on every row of b.
func Fill(b *otlp.Batch, idx *deploys.Index) {
	var c cache
	fill(&c, idx, b.Logs.ServiceName, b.Logs.Timestamp, &b.Logs.Enrichment)
	for _, m := range []*otlp.MetricCommon{&b.Gauge.MetricCommon, &b.Sum.MetricCommon, &b.Histogram.MetricCommon, &b.ExpHistogram.MetricCommon, &b.Summary.MetricCommon} {
		fill(&c, idx, m.ServiceName, m.TimeUnix, &m.Enrichment)
	}
}

func fill(c *cache, idx *deploys.Index, services []string, ts []int64, e *otlp.Enrichment) {
	for i, svc := range services {
		env, t := e.Environment[i], ts[i]
		if !c.valid || svc != c.service || env != c.env || t < c.from || t >= c.until {
			d, from, until := idx.LiveSpan(svc, env, time.Unix(0, t))
			c.service, c.env, c.valid = svc, env, true
			c.from, c.until = nanos(from), nanos(until)
			c.id, c.version = "", ""
			if d != nil {
				c.id, c.version = d.ID, d.Version
			} else {
				c.from = -1 << 63
			}
		}
		e.DeployId[i], e.DeployVersion[i] = c.id, c.version
	}
}

func nanos(t time.Time) int64 {
	if t.Year() > 2262 {
		return 1<<63 - 1
	}
	return t.UnixNano()
}

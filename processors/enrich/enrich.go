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
	service, env otlp.Str
	from, until  int64 // unix nanoseconds
	id, version  copied
	valid        bool
}

// copied is a string stored in the batch, kept with its Str so that runs
// of rows with the same value copy it once.
type copied struct {
	s   string
	ref otlp.Str
}

func (c *copied) set(src *otlp.Sources, s string) {
	if s != c.s || (s != "" && c.ref.Len == 0) {
		c.s, c.ref = s, src.Copy(s)
	}
}

// Fill sets DeployId and DeployVersion on every row of b.
func Fill(b *otlp.Batch, idx *deploys.Index) {
	var c cache
	fill(&c, &b.Src, idx, b.Logs.ServiceName, b.Logs.Timestamp, &b.Logs.Enrichment)
	for _, m := range []*otlp.MetricCommon{&b.Gauge.MetricCommon, &b.Sum.MetricCommon, &b.Histogram.MetricCommon, &b.ExpHistogram.MetricCommon, &b.Summary.MetricCommon} {
		fill(&c, &b.Src, idx, m.ServiceName, m.TimeUnix, &m.Enrichment)
	}
}

func fill(c *cache, src *otlp.Sources, idx *deploys.Index, services []otlp.Str, ts []int64, e *otlp.Enrichment) {
	for i, svc := range services {
		env, t := e.Environment[i], ts[i]
		if !c.valid || !src.Equal(svc, c.service) || !src.Equal(env, c.env) || t < c.from || t >= c.until {
			d, from, until := idx.LiveSpan(src.String(svc), src.String(env), time.Unix(0, t))
			c.service, c.env, c.valid = svc, env, true
			c.from, c.until = nanos(from), nanos(until)
			id, version := "", ""
			if d != nil {
				id, version = d.ID, d.Version
			} else {
				c.from = -1 << 63
			}
			c.id.set(src, id)
			c.version.set(src, version)
		}
		e.DeployId[i], e.DeployVersion[i] = c.id.ref, c.version.ref
	}
}

func nanos(t time.Time) int64 {
	if t.Year() > 2262 {
		return 1<<63 - 1
	}
	return t.UnixNano()
}

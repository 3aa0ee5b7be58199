package enrich

import (
	"cmp"
	"slices"
	"time"

	"github.com/faultline-dev/faultline/processors/otlp"
)

// Incidents knows, per service and environment, when incidents were open,
// so rows can carry the incident they fall in.
type Incidents struct {
	byKey map[[2]string][]span
	byID  map[string]*span
}

type span struct {
	id         string
	key        [2]string
	start, end int64 // unix nanoseconds; end 0 while open
}

// NewIncidents returns an empty set.
func NewIncidents() *Incidents {
	return &Incidents{byKey: map[[2]string][]span{}, byID: map[string]*span{}}
}

// Open records that an incident started (or moves its start earlier).
func (x *Incidents) Open(id, service, env string, at time.Time) { x.set(id, service, env, at, false) }

// Resolve records that an incident ended.
func (x *Incidents) Resolve(id, service, env string, at time.Time) { x.set(id, service, env, at, true) }

func (x *Incidents) set(id, service, env string, at time.Time, resolve bool) {
	k := [2]string{service, env}
	list := x.byKey[k]
	i := slices.IndexFunc(list, func(s span) bool { return s.id == id })
	if i < 0 {
		list = append(list, span{id: id, key: k, start: at.UnixNano()})
		i = len(list) - 1
	}
	s := &list[i]
	if resolve {
		s.end = at.UnixNano()
		if s.start == 0 || s.start > s.end {
			s.start = s.end
		}
	} else if at.UnixNano() < s.start {
		s.start = at.UnixNano()
	}
	slices.SortFunc(list, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	x.byKey[k] = list
}

// at returns the incident open for a service and environment at t.
func (x *Incidents) at(service, env string, t int64) string {
	list := x.byKey[[2]string{service, env}]
	for i := len(list) - 1; i >= 0; i-- {
		s := list[i]
		if s.start <= t && (s.end == 0 || t < s.end) {
			return s.id
		}
	}
	return ""
}

// FillIncidents sets IncidentId on every row of b.
func FillIncidents(b *otlp.Batch, x *Incidents) {
	if len(x.byKey) == 0 {
		return
	}
	var id copied
	fillInc(x, &b.Src, &id, b.Logs.ServiceName, b.Logs.Timestamp, &b.Logs.Enrichment)
	for _, m := range []*otlp.MetricCommon{&b.Gauge.MetricCommon, &b.Sum.MetricCommon, &b.Histogram.MetricCommon, &b.ExpHistogram.MetricCommon, &b.Summary.MetricCommon} {
		fillInc(x, &b.Src, &id, m.ServiceName, m.TimeUnix, &m.Enrichment)
	}
}

func fillInc(x *Incidents, src *otlp.Sources, id *copied, services []otlp.Str, ts []int64, e *otlp.Enrichment) {
	for i := 0; i < len(services); i++ {
		svc, env := src.String(services[i]), src.String(e.Environment[i])
		if _, ok := x.byKey[[2]string{svc, env}]; !ok {
			// No incident ever for this key: skip the resource's rows.
			for i+1 < len(services) && src.Equal(services[i+1], services[i]) && src.Equal(e.Environment[i+1], e.Environment[i]) {
				i++
			}
			continue
		}
		id.set(src, x.at(svc, env, ts[i]))
		e.IncidentId[i] = id.ref
	}
}

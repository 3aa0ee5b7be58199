package detect

import (
	"time"
)

// RequestMetric is the histogram whose counts the metric rule reads.
const RequestMetric = "http.server.request.duration"

// Point is one http.server.request.duration histogram point, as workers
// forward it: the correlator turns cumulative counts into deltas, which
// needs every earlier point of the series.
type Point struct {
	Series      uint64 `json:"id"` // hash of resource, scope and point attributes
	Service     string `json:"s"`
	Environment string `json:"e"`
	Version     string `json:"v,omitempty"`
	Start       int64  `json:"st"` // StartTimeUnixNano
	Time        int64  `json:"t"`  // TimeUnixNano
	Count       uint64 `json:"c"`
	Failed      bool   `json:"f,omitempty"` // http.response.status_code >= 500
	Delta       bool   `json:"d,omitempty"` // delta temporality
	// Lat is the point's latency histogram on the grid (LatHist.Sparse),
	// for a latency metric; LatencyOnly marks a point of a latency metric
	// other than RequestMetric, whose count is not a request count.
	Lat         [][2]uint64 `json:"lh,omitempty"`
	LatencyOnly bool        `json:"lo,omitempty"`
}

type seriesState struct {
	start, time int64
	count       uint64
	lat         *LatHist // the last cumulative latency histogram
}

// Deltas turns cumulative points into per-minute request counts by this
// rule: the count between two consecutive points of a series belongs
// to the minute of the later point; a point whose start time changed or
// whose count went down is a reset and starts a new baseline, its own count
// being the delta when its start lies after the previous point. The first
// point of a series is only a baseline. Delta-temporality points count as
// they are.
type Deltas struct {
	series map[uint64]seriesState
}

// NewDeltas returns an empty tracker.
func NewDeltas() *Deltas { return &Deltas{series: map[uint64]seriesState{}} }

// Add returns the aggregate a point contributes (zero counts when none).
func (d *Deltas) Add(p Point) Aggregate {
	a := Aggregate{Service: p.Service, Environment: p.Environment, Version: p.Version, Minute: floorMinute(p.Time)}
	var cur *LatHist
	if len(p.Lat) > 0 {
		cur = new(LatHist)
		cur.FromSparse(p.Lat)
	}
	var n uint64
	var lat *LatHist // this point's share of the latency histogram
	if p.Delta {
		n, lat = p.Count, cur
	} else {
		prev, seen := d.series[p.Series]
		switch {
		case !seen:
			n = 0
		case p.Time <= prev.time:
			return a // a repeated or older point: already counted
		case p.Start != prev.start || p.Count < prev.count:
			if p.Start > prev.time {
				n, lat = p.Count, cur
			}
		default:
			n = p.Count - prev.count
			if cur != nil && prev.lat != nil {
				lat = new(LatHist)
				for i := range cur {
					if cur[i] < prev.lat[i] {
						lat = nil // buckets went down: not a delta to trust
						break
					}
					lat[i] = cur[i] - prev.lat[i]
				}
			}
		}
		d.series[p.Series] = seriesState{start: p.Start, time: p.Time, count: p.Count, lat: cur}
	}
	a.Lat = lat
	if p.LatencyOnly {
		return a
	}
	a.Requests = n
	if p.Failed {
		a.Failed = n
	}
	return a
}

// Prune forgets series not seen since before.
func (d *Deltas) Prune(before time.Time) {
	limit := before.UnixNano()
	for k, s := range d.series {
		if s.time < limit {
			delete(d.series, k)
		}
	}
}

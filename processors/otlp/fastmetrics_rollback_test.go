package otlp

import "testing"

// TestDeclineOntoRows: requests the walker declines, appended after and
// between ones it takes, leave no partial rows behind: the pdata fallback
// then gives exactly the rows pdata alone gives, and every column of every
// table has one entry per row.
func TestDeclineOntoRows(t *testing.T) {
	for seed := uint64(0); seed < 150; seed++ {
		var reqs [][]byte
		for k := uint64(0); k < 5; k++ {
			reqs = append(reqs, RandomMetrics(seed*10+k, (seed+k)%2 == 0))
		}
		mixed, ref := NewBatch(), NewBatch()
		declined := 0
		for _, p := range reqs {
			if _, err := mixed.appendMetricsProto(p); err != nil {
				declined++
				if _, err := mixed.appendMetricsPdata(FormatProtobuf, p); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := ref.appendMetricsPdata(FormatProtobuf, p); err != nil {
				t.Fatal(err)
			}
		}
		if !sameMetrics(mixed, ref) {
			t.Fatalf("seed %d: differ (declined %d)", seed, declined)
		}
		checkLens(t, mixed)
	}
}

// checkLens fails unless every column of every metric table has one
// entry per row.
func checkLens(t *testing.T, b *Batch) {
	chk := func(name string, c *MetricCommon, n int, extra ...int) {
		if len(c.Attributes.Offsets) != n || len(c.MetricName) != n || c.ResourceAttributes.Len() != n || c.ScopeAttributes.Len() != n || len(c.DeployId) != n {
			t.Fatalf("%s: inconsistent", name)
		}
		for i, e := range extra {
			if e != n {
				t.Fatalf("%s: extra %d = %d want %d", name, i, e, n)
			}
		}
	}
	g := &b.Gauge
	chk("gauge", &g.MetricCommon, g.Len(), len(g.Value), len(g.Exemplars.Offsets))
	s := &b.Sum
	chk("sum", &s.MetricCommon, s.Len(), len(s.Value), len(s.Exemplars.Offsets), len(s.AggregationTemporality), len(s.IsMonotonic))
	h := &b.Histogram
	chk("hist", &h.MetricCommon, h.Len(), len(h.Count), len(h.BucketCounts.Offsets), len(h.ExplicitBounds.Offsets), len(h.Exemplars.Offsets))
	e := &b.ExpHistogram
	chk("exp", &e.MetricCommon, e.Len(), len(e.Count), len(e.PositiveBucketCounts.Offsets), len(e.NegativeBucketCounts.Offsets), len(e.Exemplars.Offsets))
	q := &b.Summary
	chk("summ", &q.MetricCommon, q.Len(), len(q.Count), len(q.Quantile.Offsets), len(q.QuantileValue.Offsets))
}

// TestDeclineMidway: a request whose first resources the walker takes and
// whose later ones it declines (and the reverse) rolls back to the rows
// before it.
func TestDeclineMidway(t *testing.T) {
	total, decl := 0, 0
	for seed := uint64(0); seed < 100; seed++ {
		good := RandomMetrics(seed, false)
		bad := RandomMetrics(seed+1000, true)
		// One request of good resources, then ones with nested values
		// (field 1 is repeated, so concatenated requests are one request).
		p := append(append([]byte{}, good...), bad...)
		p2 := append(append([]byte{}, bad...), good...)
		mixed, ref := NewBatch(), NewBatch()
		for _, q := range [][]byte{good, p, good, p2, bad, good} {
			total++
			if _, err := mixed.appendMetricsProto(q); err != nil {
				decl++
				if _, err := mixed.appendMetricsPdata(FormatProtobuf, q); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := ref.appendMetricsPdata(FormatProtobuf, q); err != nil {
				t.Fatal(err)
			}
		}
		if !sameMetrics(mixed, ref) {
			t.Fatalf("seed %d differ", seed)
		}
		checkLens(t, mixed)
	}
	t.Logf("declined %d of %d", decl, total)
}

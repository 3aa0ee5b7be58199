package otlp

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// MetricCommon are the columns every otel_metrics_* table has.
type MetricCommon struct {
	ResourceAttributes    SharedAttrs
	ResourceSchemaUrl     []Str
	ScopeName             []Str
	ScopeVersion          []Str
	ScopeAttributes       SharedAttrs
	ScopeDroppedAttrCount []uint32
	ScopeSchemaUrl        []Str
	ServiceName           []Str
	MetricName            []Str
	MetricDescription     []Str
	MetricUnit            []Str
	Attributes            Attrs
	StartTimeUnix         []int64
	TimeUnix              []int64
	Flags                 []uint32
	Enrichment
}

// Len is the number of rows.
func (c *MetricCommon) Len() int { return len(c.TimeUnix) }

func (c *MetricCommon) reset() {
	c.ResourceAttributes.reset()
	c.ScopeAttributes.reset()
	c.Attributes.reset()
	c.ResourceSchemaUrl, c.ScopeName, c.ScopeVersion = c.ResourceSchemaUrl[:0], c.ScopeName[:0], c.ScopeVersion[:0]
	c.ScopeDroppedAttrCount, c.ScopeSchemaUrl, c.ServiceName = c.ScopeDroppedAttrCount[:0], c.ScopeSchemaUrl[:0], c.ServiceName[:0]
	c.MetricName, c.MetricDescription, c.MetricUnit = c.MetricName[:0], c.MetricDescription[:0], c.MetricUnit[:0]
	c.StartTimeUnix, c.TimeUnix, c.Flags = c.StartTimeUnix[:0], c.TimeUnix[:0], c.Flags[:0]
	c.Enrichment.reset()
}

// U64Arrays is an Array(UInt64) column: row i is Values[Offsets[i-1]:Offsets[i]].
type U64Arrays struct {
	Values, Offsets []uint64
}

func (a *U64Arrays) reset() { a.Values, a.Offsets = a.Values[:0], a.Offsets[:0] }

// Row returns row i's array, aliasing the column.
func (a *U64Arrays) Row(i int) []uint64 {
	from := uint64(0)
	if i > 0 {
		from = a.Offsets[i-1]
	}
	return a.Values[from:a.Offsets[i]]
}
func (a *U64Arrays) appendRow(v []uint64) {
	a.Values = append(a.Values, v...)
	a.Offsets = append(a.Offsets, uint64(len(a.Values)))
}

// F64Arrays is an Array(Float64) column.
type F64Arrays struct {
	Values  []float64
	Offsets []uint64
}

func (a *F64Arrays) reset() { a.Values, a.Offsets = a.Values[:0], a.Offsets[:0] }

// Row returns row i's array, aliasing the column.
func (a *F64Arrays) Row(i int) []float64 {
	from := uint64(0)
	if i > 0 {
		from = a.Offsets[i-1]
	}
	return a.Values[from:a.Offsets[i]]
}
func (a *F64Arrays) appendRow(v []float64) {
	a.Values = append(a.Values, v...)
	a.Offsets = append(a.Offsets, uint64(len(a.Values)))
}

// Exemplars is the Exemplars Nested column: row i holds exemplars
// Offsets[i-1]:Offsets[i] of the flat columns.
type Exemplars struct {
	Offsets            []uint64
	FilteredAttributes Attrs
	TimeUnix           []int64
	Value              []float64
	SpanId             []Str
	TraceId            []Str
}

func (e *Exemplars) reset() {
	e.Offsets, e.TimeUnix, e.Value, e.SpanId, e.TraceId = e.Offsets[:0], e.TimeUnix[:0], e.Value[:0], e.SpanId[:0], e.TraceId[:0]
	e.FilteredAttributes.reset()
}

func (e *Exemplars) appendRow(d *decoder, s pmetric.ExemplarSlice) {
	for i := 0; i < s.Len(); i++ {
		x := s.At(i)
		d.appendAttrs(d.src, &e.FilteredAttributes, x.FilteredAttributes())
		e.TimeUnix = append(e.TimeUnix, nanos(uint64(x.Timestamp())))
		v := x.DoubleValue()
		if x.ValueType() == pmetric.ExemplarValueTypeInt {
			v = float64(x.IntValue())
		}
		e.Value = append(e.Value, v)
		e.SpanId = append(e.SpanId, spanID(d.src, x.SpanID()))
		e.TraceId = append(e.TraceId, traceID(d.src, x.TraceID()))
	}
	e.Offsets = append(e.Offsets, uint64(len(e.TimeUnix)))
}

// GaugeRows are rows of otel_metrics_gauge.
type GaugeRows struct {
	MetricCommon
	Value     []float64
	Exemplars Exemplars
}

func (r *GaugeRows) reset() { r.MetricCommon.reset(); r.Value = r.Value[:0]; r.Exemplars.reset() }

// SumRows are rows of otel_metrics_sum.
type SumRows struct {
	MetricCommon
	Value                  []float64
	AggregationTemporality []int32
	IsMonotonic            []bool
	Exemplars              Exemplars
}

func (r *SumRows) reset() {
	r.MetricCommon.reset()
	r.Value, r.AggregationTemporality, r.IsMonotonic = r.Value[:0], r.AggregationTemporality[:0], r.IsMonotonic[:0]
	r.Exemplars.reset()
}

// HistogramRows are rows of otel_metrics_histogram.
type HistogramRows struct {
	MetricCommon
	Count                  []uint64
	Sum                    []float64
	BucketCounts           U64Arrays
	ExplicitBounds         F64Arrays
	Min, Max               []float64
	AggregationTemporality []int32
	Exemplars              Exemplars
}

func (r *HistogramRows) reset() {
	r.MetricCommon.reset()
	r.Count, r.Sum, r.Min, r.Max, r.AggregationTemporality = r.Count[:0], r.Sum[:0], r.Min[:0], r.Max[:0], r.AggregationTemporality[:0]
	r.BucketCounts.reset()
	r.ExplicitBounds.reset()
	r.Exemplars.reset()
}

// ExpHistogramRows are rows of otel_metrics_exponential_histogram.
type ExpHistogramRows struct {
	MetricCommon
	Count                  []uint64
	Sum                    []float64
	Scale                  []int32
	ZeroCount              []uint64
	PositiveOffset         []int32
	PositiveBucketCounts   U64Arrays
	NegativeOffset         []int32
	NegativeBucketCounts   U64Arrays
	Min, Max               []float64
	AggregationTemporality []int32
	Exemplars              Exemplars
}

func (r *ExpHistogramRows) reset() {
	r.MetricCommon.reset()
	r.Count, r.Sum, r.Scale, r.ZeroCount = r.Count[:0], r.Sum[:0], r.Scale[:0], r.ZeroCount[:0]
	r.PositiveOffset, r.NegativeOffset = r.PositiveOffset[:0], r.NegativeOffset[:0]
	r.PositiveBucketCounts.reset()
	r.NegativeBucketCounts.reset()
	r.Min, r.Max, r.AggregationTemporality = r.Min[:0], r.Max[:0], r.AggregationTemporality[:0]
	r.Exemplars.reset()
}

// SummaryRows are rows of otel_metrics_summary.
type SummaryRows struct {
	MetricCommon
	Count []uint64
	Sum   []float64
	// ValueAtQuantiles Nested(Quantile, Value)
	Quantile      F64Arrays
	QuantileValue F64Arrays
}

func (r *SummaryRows) reset() {
	r.MetricCommon.reset()
	r.Count, r.Sum = r.Count[:0], r.Sum[:0]
	r.Quantile.reset()
	r.QuantileValue.reset()
}

var (
	metricsProto pmetric.ProtoUnmarshaler
	metricsJSON  pmetric.JSONUnmarshaler
)

// metricCtx is what every point of one metric repeats.
type metricCtx struct {
	res                           resourceInfo
	rschema, sname, sver, sschema Str
	dropped                       uint32
	name, desc, unit              Str
}

func (b *Batch) appendMetrics(f Format, p []byte) (int, error) {
	if f == FormatProtobuf && !slowPath {
		n, err := b.appendMetricsProto(p)
		if err == nil {
			return n, nil
		}
		// The wire walker declined: pdata decodes the request or says
		// why it cannot.
		n, perr := b.appendMetricsPdata(f, p)
		if perr != nil {
			return 0, fmt.Errorf("%w (wire walker: %v)", perr, err)
		}
		return n, nil
	}
	return b.appendMetricsPdata(f, p)
}

// appendMetricsPdata decodes through pdata: OTLP/JSON, protobuf the wire
// walker declines, and the reference the tests hold the walker to.
func (b *Batch) appendMetricsPdata(f Format, p []byte) (int, error) {
	var md pmetric.Metrics
	var err error
	if f == FormatJSON {
		md, err = metricsJSON.UnmarshalMetrics(p)
	} else {
		md, err = metricsProto.UnmarshalMetrics(p)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: metrics: %v", ErrDecode, err)
	}
	d := &b.dec
	src := &b.Src
	d.src = src
	n := 0
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		var mc metricCtx
		mc.res = d.resource(src, rm.Resource())
		mc.rschema = src.clean(rm.SchemaUrl())
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			sm := sms.At(j)
			sc := sm.Scope()
			d.flatten(src, &d.scopeKeys, &d.scopeVals, sc.Attributes())
			d.scopeGen = d.next()
			mc.sname, mc.sver, mc.sschema, mc.dropped = src.clean(sc.Name()), src.clean(sc.Version()), src.clean(sm.SchemaUrl()), sc.DroppedAttributesCount()
			ms := sm.Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				mc.name, mc.desc, mc.unit = src.clean(m.Name()), src.clean(m.Description()), src.clean(m.Unit())
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					n += b.appendGauge(&mc, m.Gauge().DataPoints())
				case pmetric.MetricTypeSum:
					n += b.appendSum(&mc, m.Sum())
				case pmetric.MetricTypeHistogram:
					n += b.appendHistogram(&mc, m.Histogram())
				case pmetric.MetricTypeExponentialHistogram:
					n += b.appendExpHistogram(&mc, m.ExponentialHistogram())
				case pmetric.MetricTypeSummary:
					n += b.appendSummary(&mc, m.Summary().DataPoints())
				}
			}
		}
	}
	return n, nil
}

// common appends the shared columns of one point.
func (d *decoder) common(c *MetricCommon, mc *metricCtx, attrs pcommon.Map, start, ts pcommon.Timestamp, flags uint32) {
	d.appendAttrs(d.src, &c.Attributes, attrs)
	d.commonRow(c, mc, uint64(start), uint64(ts), flags)
}

// commonRow appends the shared columns of one point but its attributes.
func (d *decoder) commonRow(c *MetricCommon, mc *metricCtx, start, ts uint64, flags uint32) {
	c.ResourceAttributes.appendRow(d.resGen, d.resKeys, d.resVals)
	c.ResourceSchemaUrl = append(c.ResourceSchemaUrl, mc.rschema)
	c.ScopeName = append(c.ScopeName, mc.sname)
	c.ScopeVersion = append(c.ScopeVersion, mc.sver)
	c.ScopeAttributes.appendRow(d.scopeGen, d.scopeKeys, d.scopeVals)
	c.ScopeDroppedAttrCount = append(c.ScopeDroppedAttrCount, mc.dropped)
	c.ScopeSchemaUrl = append(c.ScopeSchemaUrl, mc.sschema)
	c.ServiceName = append(c.ServiceName, mc.res.service)
	c.MetricName = append(c.MetricName, mc.name)
	c.MetricDescription = append(c.MetricDescription, mc.desc)
	c.MetricUnit = append(c.MetricUnit, mc.unit)
	c.StartTimeUnix = append(c.StartTimeUnix, nanos(start))
	c.TimeUnix = append(c.TimeUnix, nanos(ts))
	c.Flags = append(c.Flags, flags)
	c.Enrichment.appendRow(mc.res.env, mc.res.version)
}

func numberValue(p pmetric.NumberDataPoint) float64 {
	if p.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(p.IntValue())
	}
	return p.DoubleValue()
}

func (b *Batch) appendGauge(mc *metricCtx, ps pmetric.NumberDataPointSlice) int {
	r := &b.Gauge
	for i := 0; i < ps.Len(); i++ {
		p := ps.At(i)
		b.dec.common(&r.MetricCommon, mc, p.Attributes(), p.StartTimestamp(), p.Timestamp(), uint32(p.Flags()))
		r.Value = append(r.Value, numberValue(p))
		r.Exemplars.appendRow(&b.dec, p.Exemplars())
	}
	return ps.Len()
}

func (b *Batch) appendSum(mc *metricCtx, s pmetric.Sum) int {
	r := &b.Sum
	ps := s.DataPoints()
	for i := 0; i < ps.Len(); i++ {
		p := ps.At(i)
		b.dec.common(&r.MetricCommon, mc, p.Attributes(), p.StartTimestamp(), p.Timestamp(), uint32(p.Flags()))
		r.Value = append(r.Value, numberValue(p))
		r.AggregationTemporality = append(r.AggregationTemporality, int32(s.AggregationTemporality()))
		r.IsMonotonic = append(r.IsMonotonic, s.IsMonotonic())
		r.Exemplars.appendRow(&b.dec, p.Exemplars())
	}
	return ps.Len()
}

func (b *Batch) appendHistogram(mc *metricCtx, h pmetric.Histogram) int {
	r := &b.Histogram
	ps := h.DataPoints()
	for i := 0; i < ps.Len(); i++ {
		p := ps.At(i)
		b.dec.common(&r.MetricCommon, mc, p.Attributes(), p.StartTimestamp(), p.Timestamp(), uint32(p.Flags()))
		r.Count = append(r.Count, p.Count())
		r.Sum = append(r.Sum, p.Sum())
		r.BucketCounts.appendRow(p.BucketCounts().AsRaw())
		r.ExplicitBounds.appendRow(p.ExplicitBounds().AsRaw())
		r.Min = append(r.Min, p.Min())
		r.Max = append(r.Max, p.Max())
		r.AggregationTemporality = append(r.AggregationTemporality, int32(h.AggregationTemporality()))
		r.Exemplars.appendRow(&b.dec, p.Exemplars())
	}
	return ps.Len()
}

func (b *Batch) appendExpHistogram(mc *metricCtx, h pmetric.ExponentialHistogram) int {
	r := &b.ExpHistogram
	ps := h.DataPoints()
	for i := 0; i < ps.Len(); i++ {
		p := ps.At(i)
		b.dec.common(&r.MetricCommon, mc, p.Attributes(), p.StartTimestamp(), p.Timestamp(), uint32(p.Flags()))
		r.Count = append(r.Count, p.Count())
		r.Sum = append(r.Sum, p.Sum())
		r.Scale = append(r.Scale, p.Scale())
		r.ZeroCount = append(r.ZeroCount, p.ZeroCount())
		r.PositiveOffset = append(r.PositiveOffset, p.Positive().Offset())
		r.PositiveBucketCounts.appendRow(p.Positive().BucketCounts().AsRaw())
		r.NegativeOffset = append(r.NegativeOffset, p.Negative().Offset())
		r.NegativeBucketCounts.appendRow(p.Negative().BucketCounts().AsRaw())
		r.Min = append(r.Min, p.Min())
		r.Max = append(r.Max, p.Max())
		r.AggregationTemporality = append(r.AggregationTemporality, int32(h.AggregationTemporality()))
		r.Exemplars.appendRow(&b.dec, p.Exemplars())
	}
	return ps.Len()
}

func (b *Batch) appendSummary(mc *metricCtx, ps pmetric.SummaryDataPointSlice) int {
	r := &b.Summary
	for i := 0; i < ps.Len(); i++ {
		p := ps.At(i)
		b.dec.common(&r.MetricCommon, mc, p.Attributes(), p.StartTimestamp(), p.Timestamp(), uint32(p.Flags()))
		r.Count = append(r.Count, p.Count())
		r.Sum = append(r.Sum, p.Sum())
		qs := p.QuantileValues()
		for j := 0; j < qs.Len(); j++ {
			r.Quantile.Values = append(r.Quantile.Values, qs.At(j).Quantile())
			r.QuantileValue.Values = append(r.QuantileValue.Values, qs.At(j).Value())
		}
		r.Quantile.Offsets = append(r.Quantile.Offsets, uint64(len(r.Quantile.Values)))
		r.QuantileValue.Offsets = append(r.QuantileValue.Offsets, uint64(len(r.QuantileValue.Values)))
	}
	return ps.Len()
}

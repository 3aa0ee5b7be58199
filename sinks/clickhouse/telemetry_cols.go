package clickhouse

import (
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/faultline-dev/faultline/processors/otlp"
)

// The ch-go columns of each telemetry table, kept across writes. fill
// copies a batch's slices in and returns the insert's input; Input.Reset
// empties them again, keeping their memory.

func dt64() *proto.ColDateTime64 { return new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano) }

func appendDT64(c *proto.ColDateTime64, v []int64) {
	for _, t := range v {
		c.Data = append(c.Data, proto.DateTime64(t))
	}
}

// exemplarCols are the flattened Exemplars Nested columns.
type exemplarCols struct {
	attrs, span, trace *arr
	time               *proto.ColArr[time.Time]
	timeData           *proto.ColDateTime64
	value              *proto.ColArr[float64]
	valueData          *proto.ColFloat64
}

func (e *exemplarCols) init() {
	e.attrs, e.span, e.trace = &arr{data: new(attrMap)}, &arr{data: new(strs)}, &arr{data: new(strs)}
	e.timeData = dt64()
	e.time = proto.NewArray[time.Time](e.timeData)
	e.valueData = new(proto.ColFloat64)
	e.value = proto.NewArray[float64](e.valueData)
}

func (e *exemplarCols) fill(src *otlp.Sources, x *otlp.Exemplars) proto.Input {
	e.attrs.data.(*attrMap).fill(src, &x.FilteredAttributes)
	appendDT64(e.timeData, x.TimeUnix)
	*e.valueData = append(*e.valueData, x.Value...)
	e.span.data.(*strs).AppendArr(src, x.SpanId)
	e.trace.data.(*strs).AppendArr(src, x.TraceId)
	e.attrs.appendOffsets(x.Offsets)
	e.span.appendOffsets(x.Offsets)
	e.trace.appendOffsets(x.Offsets)
	e.time.Offsets = append(e.time.Offsets, x.Offsets...)
	e.value.Offsets = append(e.value.Offsets, x.Offsets...)
	return proto.Input{
		{Name: "Exemplars.FilteredAttributes", Data: e.attrs},
		{Name: "Exemplars.TimeUnix", Data: e.time},
		{Name: "Exemplars.Value", Data: e.value},
		{Name: "Exemplars.SpanId", Data: e.span},
		{Name: "Exemplars.TraceId", Data: e.trace},
	}
}

// enrichCols are DeployId and DeployVersion. IncidentId is an ALIAS
// column: it is read, never written.
type enrichCols struct {
	deployID, deployVersion *lowCard
}

func (e *enrichCols) init() {
	e.deployID, e.deployVersion = new(lowCard), new(lowCard)
}

func (e *enrichCols) fill(src *otlp.Sources, x *otlp.Enrichment) proto.Input {
	e.deployID.AppendArr(src, x.DeployId)
	e.deployVersion.AppendArr(src, x.DeployVersion)
	return proto.Input{
		{Name: "DeployId", Data: e.deployID},
		{Name: "DeployVersion", Data: e.deployVersion},
	}
}

type logCols struct {
	ts                                                 *proto.ColDateTime64
	traceID, spanID, body, scopeName, eventName        *strs
	flags, sevNum                                      *proto.ColUInt8
	sevText, service, resSchema, scopeSchema, scopeVer *lowCard
	resAttrs, scopeAttrs, logAttrs                     *attrMap
	enrich                                             enrichCols
}

func (c *logCols) init() {
	c.ts = dt64()
	c.traceID, c.spanID, c.body, c.scopeName, c.eventName = new(strs), new(strs), new(strs), new(strs), new(strs)
	c.flags, c.sevNum = new(proto.ColUInt8), new(proto.ColUInt8)
	c.sevText, c.service, c.resSchema, c.scopeSchema, c.scopeVer = new(lowCard), new(lowCard), new(lowCard), new(lowCard), new(lowCard)
	c.resAttrs, c.scopeAttrs, c.logAttrs = new(attrMap), new(attrMap), new(attrMap)
	c.enrich.init()
}

func (c *logCols) fill(src *otlp.Sources, r *otlp.LogRows) proto.Input {
	appendDT64(c.ts, r.Timestamp)
	c.traceID.AppendArr(src, r.TraceId)
	c.spanID.AppendArr(src, r.SpanId)
	*c.flags = append(*c.flags, r.TraceFlags...)
	c.sevText.AppendArr(src, r.SeverityText)
	*c.sevNum = append(*c.sevNum, r.SeverityNumber...)
	c.service.AppendArr(src, r.ServiceName)
	c.body.AppendArr(src, r.Body)
	c.resSchema.AppendArr(src, r.ResourceSchemaUrl)
	c.resAttrs.fillShared(src, &r.ResourceAttributes)
	c.scopeSchema.AppendArr(src, r.ScopeSchemaUrl)
	c.scopeName.AppendArr(src, r.ScopeName)
	c.scopeVer.AppendArr(src, r.ScopeVersion)
	c.scopeAttrs.fillShared(src, &r.ScopeAttributes)
	c.logAttrs.fill(src, &r.LogAttributes)
	c.eventName.AppendArr(src, r.EventName)
	in := proto.Input{
		{Name: "Timestamp", Data: c.ts},
		{Name: "TraceId", Data: c.traceID},
		{Name: "SpanId", Data: c.spanID},
		{Name: "TraceFlags", Data: c.flags},
		{Name: "SeverityText", Data: c.sevText},
		{Name: "SeverityNumber", Data: c.sevNum},
		{Name: "ServiceName", Data: c.service},
		{Name: "Body", Data: c.body},
		{Name: "ResourceSchemaUrl", Data: c.resSchema},
		{Name: "ResourceAttributes", Data: c.resAttrs},
		{Name: "ScopeSchemaUrl", Data: c.scopeSchema},
		{Name: "ScopeName", Data: c.scopeName},
		{Name: "ScopeVersion", Data: c.scopeVer},
		{Name: "ScopeAttributes", Data: c.scopeAttrs},
		{Name: "LogAttributes", Data: c.logAttrs},
		{Name: "EventName", Data: c.eventName},
	}
	return append(in, c.enrich.fill(src, &r.Enrichment)...)
}

// metricCols are the columns every metric table has.
type metricCols struct {
	resAttrs, scopeAttrs, attrs                                   *attrMap
	resSchema, scopeName, scopeVer, scopeSchema, name, desc, unit *strs
	dropped, flags                                                *proto.ColUInt32
	service                                                       *lowCard
	start, ts                                                     *proto.ColDateTime64
	enrich                                                        enrichCols
}

func (c *metricCols) init() {
	c.resAttrs, c.scopeAttrs, c.attrs = new(attrMap), new(attrMap), new(attrMap)
	c.resSchema, c.scopeName, c.scopeVer, c.scopeSchema = new(strs), new(strs), new(strs), new(strs)
	c.name, c.desc, c.unit = new(strs), new(strs), new(strs)
	c.dropped, c.flags = new(proto.ColUInt32), new(proto.ColUInt32)
	c.service = new(lowCard)
	c.start, c.ts = dt64(), dt64()
	c.enrich.init()
}

func (c *metricCols) fill(src *otlp.Sources, r *otlp.MetricCommon) proto.Input {
	c.resAttrs.fillShared(src, &r.ResourceAttributes)
	c.resSchema.AppendArr(src, r.ResourceSchemaUrl)
	c.scopeName.AppendArr(src, r.ScopeName)
	c.scopeVer.AppendArr(src, r.ScopeVersion)
	c.scopeAttrs.fillShared(src, &r.ScopeAttributes)
	*c.dropped = append(*c.dropped, r.ScopeDroppedAttrCount...)
	c.scopeSchema.AppendArr(src, r.ScopeSchemaUrl)
	c.service.AppendArr(src, r.ServiceName)
	c.name.AppendArr(src, r.MetricName)
	c.desc.AppendArr(src, r.MetricDescription)
	c.unit.AppendArr(src, r.MetricUnit)
	c.attrs.fill(src, &r.Attributes)
	appendDT64(c.start, r.StartTimeUnix)
	appendDT64(c.ts, r.TimeUnix)
	*c.flags = append(*c.flags, r.Flags...)
	in := proto.Input{
		{Name: "ResourceAttributes", Data: c.resAttrs},
		{Name: "ResourceSchemaUrl", Data: c.resSchema},
		{Name: "ScopeName", Data: c.scopeName},
		{Name: "ScopeVersion", Data: c.scopeVer},
		{Name: "ScopeAttributes", Data: c.scopeAttrs},
		{Name: "ScopeDroppedAttrCount", Data: c.dropped},
		{Name: "ScopeSchemaUrl", Data: c.scopeSchema},
		{Name: "ServiceName", Data: c.service},
		{Name: "MetricName", Data: c.name},
		{Name: "MetricDescription", Data: c.desc},
		{Name: "MetricUnit", Data: c.unit},
		{Name: "Attributes", Data: c.attrs},
		{Name: "StartTimeUnix", Data: c.start},
		{Name: "TimeUnix", Data: c.ts},
		{Name: "Flags", Data: c.flags},
	}
	return append(in, c.enrich.fill(src, &r.Enrichment)...)
}

type gaugeCols struct {
	metricCols
	value *proto.ColFloat64
	ex    exemplarCols
}

func (c *gaugeCols) init() { c.metricCols.init(); c.value = new(proto.ColFloat64); c.ex.init() }

func (c *gaugeCols) fill(src *otlp.Sources, r *otlp.GaugeRows) proto.Input {
	in := c.metricCols.fill(src, &r.MetricCommon)
	*c.value = append(*c.value, r.Value...)
	in = append(in, proto.InputColumn{Name: "Value", Data: c.value})
	return append(in, c.ex.fill(src, &r.Exemplars)...)
}

type sumCols struct {
	metricCols
	value *proto.ColFloat64
	temp  *proto.ColInt32
	mono  *proto.ColBool
	ex    exemplarCols
}

func (c *sumCols) init() {
	c.metricCols.init()
	c.value, c.temp, c.mono = new(proto.ColFloat64), new(proto.ColInt32), new(proto.ColBool)
	c.ex.init()
}

func (c *sumCols) fill(src *otlp.Sources, r *otlp.SumRows) proto.Input {
	in := c.metricCols.fill(src, &r.MetricCommon)
	*c.value = append(*c.value, r.Value...)
	*c.temp = append(*c.temp, r.AggregationTemporality...)
	*c.mono = append(*c.mono, r.IsMonotonic...)
	in = append(in,
		proto.InputColumn{Name: "Value", Data: c.value},
		proto.InputColumn{Name: "AggregationTemporality", Data: c.temp},
		proto.InputColumn{Name: "IsMonotonic", Data: c.mono})
	return append(in, c.ex.fill(src, &r.Exemplars)...)
}

func u64Arr() (*proto.ColArr[uint64], *proto.ColUInt64) {
	d := new(proto.ColUInt64)
	return proto.NewArray[uint64](d), d
}

func f64Arr() (*proto.ColArr[float64], *proto.ColFloat64) {
	d := new(proto.ColFloat64)
	return proto.NewArray[float64](d), d
}

type histCols struct {
	metricCols
	count         *proto.ColUInt64
	sum, min, max *proto.ColFloat64
	buckets       *proto.ColArr[uint64]
	bucketData    *proto.ColUInt64
	bounds        *proto.ColArr[float64]
	boundData     *proto.ColFloat64
	temp          *proto.ColInt32
	ex            exemplarCols
}

func (c *histCols) init() {
	c.metricCols.init()
	c.count = new(proto.ColUInt64)
	c.sum, c.min, c.max = new(proto.ColFloat64), new(proto.ColFloat64), new(proto.ColFloat64)
	c.buckets, c.bucketData = u64Arr()
	c.bounds, c.boundData = f64Arr()
	c.temp = new(proto.ColInt32)
	c.ex.init()
}

func (c *histCols) fill(src *otlp.Sources, r *otlp.HistogramRows) proto.Input {
	in := c.metricCols.fill(src, &r.MetricCommon)
	*c.count = append(*c.count, r.Count...)
	*c.sum = append(*c.sum, r.Sum...)
	*c.bucketData = append(*c.bucketData, r.BucketCounts.Values...)
	c.buckets.Offsets = append(c.buckets.Offsets, r.BucketCounts.Offsets...)
	*c.boundData = append(*c.boundData, r.ExplicitBounds.Values...)
	c.bounds.Offsets = append(c.bounds.Offsets, r.ExplicitBounds.Offsets...)
	*c.min = append(*c.min, r.Min...)
	*c.max = append(*c.max, r.Max...)
	*c.temp = append(*c.temp, r.AggregationTemporality...)
	in = append(in,
		proto.InputColumn{Name: "Count", Data: c.count},
		proto.InputColumn{Name: "Sum", Data: c.sum},
		proto.InputColumn{Name: "BucketCounts", Data: c.buckets},
		proto.InputColumn{Name: "ExplicitBounds", Data: c.bounds},
		proto.InputColumn{Name: "Min", Data: c.min},
		proto.InputColumn{Name: "Max", Data: c.max},
		proto.InputColumn{Name: "AggregationTemporality", Data: c.temp})
	return append(in, c.ex.fill(src, &r.Exemplars)...)
}

type expCols struct {
	metricCols
	count, zero                 *proto.ColUInt64
	sum, min, max               *proto.ColFloat64
	scale, posOff, negOff, temp *proto.ColInt32
	pos, neg                    *proto.ColArr[uint64]
	posData, negData            *proto.ColUInt64
	ex                          exemplarCols
}

func (c *expCols) init() {
	c.metricCols.init()
	c.count, c.zero = new(proto.ColUInt64), new(proto.ColUInt64)
	c.sum, c.min, c.max = new(proto.ColFloat64), new(proto.ColFloat64), new(proto.ColFloat64)
	c.scale, c.posOff, c.negOff, c.temp = new(proto.ColInt32), new(proto.ColInt32), new(proto.ColInt32), new(proto.ColInt32)
	c.pos, c.posData = u64Arr()
	c.neg, c.negData = u64Arr()
	c.ex.init()
}

func (c *expCols) fill(src *otlp.Sources, r *otlp.ExpHistogramRows) proto.Input {
	in := c.metricCols.fill(src, &r.MetricCommon)
	*c.count = append(*c.count, r.Count...)
	*c.sum = append(*c.sum, r.Sum...)
	*c.scale = append(*c.scale, r.Scale...)
	*c.zero = append(*c.zero, r.ZeroCount...)
	*c.posOff = append(*c.posOff, r.PositiveOffset...)
	*c.posData = append(*c.posData, r.PositiveBucketCounts.Values...)
	c.pos.Offsets = append(c.pos.Offsets, r.PositiveBucketCounts.Offsets...)
	*c.negOff = append(*c.negOff, r.NegativeOffset...)
	*c.negData = append(*c.negData, r.NegativeBucketCounts.Values...)
	c.neg.Offsets = append(c.neg.Offsets, r.NegativeBucketCounts.Offsets...)
	*c.min = append(*c.min, r.Min...)
	*c.max = append(*c.max, r.Max...)
	*c.temp = append(*c.temp, r.AggregationTemporality...)
	in = append(in,
		proto.InputColumn{Name: "Count", Data: c.count},
		proto.InputColumn{Name: "Sum", Data: c.sum},
		proto.InputColumn{Name: "Scale", Data: c.scale},
		proto.InputColumn{Name: "ZeroCount", Data: c.zero},
		proto.InputColumn{Name: "PositiveOffset", Data: c.posOff},
		proto.InputColumn{Name: "PositiveBucketCounts", Data: c.pos},
		proto.InputColumn{Name: "NegativeOffset", Data: c.negOff},
		proto.InputColumn{Name: "NegativeBucketCounts", Data: c.neg},
		proto.InputColumn{Name: "Min", Data: c.min},
		proto.InputColumn{Name: "Max", Data: c.max},
		proto.InputColumn{Name: "AggregationTemporality", Data: c.temp})
	return append(in, c.ex.fill(src, &r.Exemplars)...)
}

type summaryCols struct {
	metricCols
	count         *proto.ColUInt64
	sum           *proto.ColFloat64
	q, qv         *proto.ColArr[float64]
	qData, qvData *proto.ColFloat64
}

func (c *summaryCols) init() {
	c.metricCols.init()
	c.count, c.sum = new(proto.ColUInt64), new(proto.ColFloat64)
	c.q, c.qData = f64Arr()
	c.qv, c.qvData = f64Arr()
}

func (c *summaryCols) fill(src *otlp.Sources, r *otlp.SummaryRows) proto.Input {
	in := c.metricCols.fill(src, &r.MetricCommon)
	*c.count = append(*c.count, r.Count...)
	*c.sum = append(*c.sum, r.Sum...)
	*c.qData = append(*c.qData, r.Quantile.Values...)
	c.q.Offsets = append(c.q.Offsets, r.Quantile.Offsets...)
	*c.qvData = append(*c.qvData, r.QuantileValue.Values...)
	c.qv.Offsets = append(c.qv.Offsets, r.QuantileValue.Offsets...)
	return append(in,
		proto.InputColumn{Name: "Count", Data: c.count},
		proto.InputColumn{Name: "Sum", Data: c.sum},
		proto.InputColumn{Name: "ValueAtQuantiles.Quantile", Data: c.q},
		proto.InputColumn{Name: "ValueAtQuantiles.Value", Data: c.qv})
}

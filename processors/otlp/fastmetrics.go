package otlp

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The protobuf metrics path walks the wire format straight into columns,
// as the logs path does (fastlogs.go), with the same machinery: the field
// iterator, attribute flattening, Strs into the payload. It implements
// this excerpt of opentelemetry-proto (metrics/v1/metrics.proto and
// common/v1, resource/v1, collector/metrics/v1), every field pdata knows:
//
//	message ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; }
//	message ResourceMetrics {
//	  Resource resource = 1;                      // attributes = 1, dropped_attributes_count = 2, entity_refs = 3
//	  repeated ScopeMetrics scope_metrics = 2;
//	  string schema_url = 3;
//	  // 1000: deprecated instrumentation_library_metrics (declined)
//	}
//	message ScopeMetrics {
//	  InstrumentationScope scope = 1;             // name = 1, version = 2, attributes = 3, dropped_attributes_count = 4
//	  repeated Metric metrics = 2;
//	  string schema_url = 3;
//	}
//	message Metric {
//	  string name = 1; string description = 2; string unit = 3;
//	  oneof data {
//	    Gauge gauge = 5; Sum sum = 7; Histogram histogram = 9;
//	    ExponentialHistogram exponential_histogram = 10; Summary summary = 11;
//	  }
//	  repeated KeyValue metadata = 12;            // checked, not kept
//	}
//	message Gauge { repeated NumberDataPoint data_points = 1; }
//	message Sum {
//	  repeated NumberDataPoint data_points = 1;
//	  AggregationTemporality aggregation_temporality = 2; bool is_monotonic = 3;
//	}
//	message Histogram { repeated HistogramDataPoint data_points = 1; AggregationTemporality aggregation_temporality = 2; }
//	message ExponentialHistogram { repeated ExponentialHistogramDataPoint data_points = 1; AggregationTemporality aggregation_temporality = 2; }
//	message Summary { repeated SummaryDataPoint data_points = 1; }
//	message NumberDataPoint {
//	  repeated KeyValue attributes = 7;
//	  fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3;
//	  oneof value { double as_double = 4; sfixed64 as_int = 6; }
//	  repeated Exemplar exemplars = 5; uint32 flags = 8;
//	}
//	message HistogramDataPoint {
//	  repeated KeyValue attributes = 9;
//	  fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3;
//	  fixed64 count = 4; optional double sum = 5;
//	  repeated fixed64 bucket_counts = 6; repeated double explicit_bounds = 7;
//	  repeated Exemplar exemplars = 8; uint32 flags = 10;
//	  optional double min = 11; optional double max = 12;
//	}
//	message ExponentialHistogramDataPoint {
//	  repeated KeyValue attributes = 1;
//	  fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3;
//	  fixed64 count = 4; optional double sum = 5; sint32 scale = 6; fixed64 zero_count = 7;
//	  Buckets positive = 8; Buckets negative = 9;
//	  uint32 flags = 10; repeated Exemplar exemplars = 11;
//	  optional double min = 12; optional double max = 13; double zero_threshold = 14;
//	  message Buckets { sint32 offset = 1; repeated uint64 bucket_counts = 2; }
//	}
//	message SummaryDataPoint {
//	  repeated KeyValue attributes = 7;
//	  fixed64 start_time_unix_nano = 2; fixed64 time_unix_nano = 3;
//	  fixed64 count = 4; double sum = 5;
//	  repeated ValueAtQuantile quantile_values = 6; uint32 flags = 8;
//	  message ValueAtQuantile { double quantile = 1; double value = 2; }
//	}
//	message Exemplar {
//	  repeated KeyValue filtered_attributes = 7; fixed64 time_unix_nano = 2;
//	  oneof value { double as_double = 3; sfixed64 as_int = 6; }
//	  bytes span_id = 4; bytes trace_id = 5;
//	}
//
// As on the logs path, the walker declines what it does not handle itself
// and pdata, the reference, decodes the request instead: malformed input
// (pdata then gives the error), array and map attribute values, the
// deprecated field 1000, dictionary-encoded strings, a singular message
// field repeated (protobuf merges them; pdata's rules differ per field), a
// metric with more than one data field, repeated fields in the unpacked
// encoding or in more than one packed run, trace and span ids of other
// lengths. Declining rolls back every column. The comparison and fuzz tests
// (fastmetrics_test.go) hold the walker's rows to pdata's.

var (
	tMetric = types(map[protowire.Number]protowire.Type{1: bytesT, 2: bytesT, 3: bytesT, 5: bytesT, 7: bytesT, 9: bytesT, 10: bytesT, 11: bytesT, 12: bytesT})
	// Gauge, Sum, Histogram, ExponentialHistogram and Summary at once: a
	// field 2 or 3 of another wire type where the message does not define
	// it makes the walker decline, never accept what pdata rejects.
	tPoints       = types(map[protowire.Number]protowire.Type{1: bytesT, 2: varT, 3: varT})
	tNumberPoint  = types(map[protowire.Number]protowire.Type{2: f64T, 3: f64T, 4: f64T, 5: bytesT, 6: f64T, 7: bytesT, 8: varT})
	tHistPoint    = types(map[protowire.Number]protowire.Type{2: f64T, 3: f64T, 4: f64T, 5: f64T, 6: bytesT, 7: bytesT, 8: bytesT, 9: bytesT, 10: varT, 11: f64T, 12: f64T})
	tExpPoint     = types(map[protowire.Number]protowire.Type{1: bytesT, 2: f64T, 3: f64T, 4: f64T, 5: f64T, 6: varT, 7: f64T, 8: bytesT, 9: bytesT, 10: varT, 11: bytesT, 12: f64T, 13: f64T, 14: f64T})
	tBuckets      = types(map[protowire.Number]protowire.Type{1: varT, 2: bytesT})
	tSummaryPoint = types(map[protowire.Number]protowire.Type{2: f64T, 3: f64T, 4: f64T, 5: f64T, 6: bytesT, 7: bytesT, 8: varT})
	tQuantile     = types(map[protowire.Number]protowire.Type{1: f64T, 2: f64T})
	tExemplar     = types(map[protowire.Number]protowire.Type{2: f64T, 3: f64T, 4: bytesT, 5: bytesT, 6: f64T, 7: bytesT})
)

// fieldErr is why the walker declined, naming the field; it is
// errFallback. A constant converts to an error without allocating.
type fieldErr string

func (e fieldErr) Error() string        { return "declined at " + string(e) }
func (e fieldErr) Is(target error) bool { return target == errFallback }

// metric data field numbers, which are also the kinds of data.
const (
	kindGauge        = 5
	kindSum          = 7
	kindHistogram    = 9
	kindExpHistogram = 10
	kindSummary      = 11
)

// commonMark remembers a metric table's common column lengths.
type commonMark struct {
	rows, kv, of int
	res, scope   sharedMark
}

func (c *MetricCommon) mark() commonMark {
	return commonMark{rows: c.Len(), kv: len(c.Attributes.Keys), of: len(c.Attributes.Offsets),
		res: c.ResourceAttributes.mark(), scope: c.ScopeAttributes.mark()}
}

func (c *MetricCommon) truncate(m commonMark) {
	n := m.rows
	c.ResourceAttributes.truncate(m.res)
	c.ScopeAttributes.truncate(m.scope)
	c.Attributes.Keys, c.Attributes.Values, c.Attributes.Offsets = c.Attributes.Keys[:m.kv], c.Attributes.Values[:m.kv], c.Attributes.Offsets[:m.of]
	c.ResourceSchemaUrl, c.ScopeName, c.ScopeVersion = c.ResourceSchemaUrl[:n], c.ScopeName[:n], c.ScopeVersion[:n]
	c.ScopeDroppedAttrCount, c.ScopeSchemaUrl, c.ServiceName = c.ScopeDroppedAttrCount[:n], c.ScopeSchemaUrl[:n], c.ServiceName[:n]
	c.MetricName, c.MetricDescription, c.MetricUnit = c.MetricName[:n], c.MetricDescription[:n], c.MetricUnit[:n]
	c.StartTimeUnix, c.TimeUnix, c.Flags = c.StartTimeUnix[:n], c.TimeUnix[:n], c.Flags[:n]
	e := &c.Enrichment
	e.Environment, e.ServiceVersion, e.DeployId, e.DeployVersion = e.Environment[:n], e.ServiceVersion[:n], e.DeployId[:n], e.DeployVersion[:n]
}

type exemplarsMark struct{ of, n, kv, kvOf int }

func (e *Exemplars) mark() exemplarsMark {
	return exemplarsMark{len(e.Offsets), len(e.TimeUnix), len(e.FilteredAttributes.Keys), len(e.FilteredAttributes.Offsets)}
}

func (e *Exemplars) truncate(m exemplarsMark) {
	e.Offsets = e.Offsets[:m.of]
	e.TimeUnix, e.Value, e.SpanId, e.TraceId = e.TimeUnix[:m.n], e.Value[:m.n], e.SpanId[:m.n], e.TraceId[:m.n]
	a := &e.FilteredAttributes
	a.Keys, a.Values, a.Offsets = a.Keys[:m.kv], a.Values[:m.kv], a.Offsets[:m.kvOf]
}

type arraysMark struct{ v, of int }

func (a *U64Arrays) mark() arraysMark      { return arraysMark{len(a.Values), len(a.Offsets)} }
func (a *U64Arrays) truncate(m arraysMark) { a.Values, a.Offsets = a.Values[:m.v], a.Offsets[:m.of] }
func (a *F64Arrays) mark() arraysMark      { return arraysMark{len(a.Values), len(a.Offsets)} }
func (a *F64Arrays) truncate(m arraysMark) { a.Values, a.Offsets = a.Values[:m.v], a.Offsets[:m.of] }

// metricsMark remembers every metric table's column lengths for a rollback.
type metricsMark struct {
	gauge, sum, hist, exp, summary commonMark
	gaugeEx, sumEx, histEx, expEx  exemplarsMark
	buckets, bounds, pos, neg      arraysMark
	quantile, quantileValue        arraysMark
}

func (b *Batch) markMetrics() metricsMark {
	return metricsMark{
		gauge: b.Gauge.mark(), sum: b.Sum.mark(), hist: b.Histogram.mark(), exp: b.ExpHistogram.mark(), summary: b.Summary.mark(),
		gaugeEx: b.Gauge.Exemplars.mark(), sumEx: b.Sum.Exemplars.mark(), histEx: b.Histogram.Exemplars.mark(), expEx: b.ExpHistogram.Exemplars.mark(),
		buckets: b.Histogram.BucketCounts.mark(), bounds: b.Histogram.ExplicitBounds.mark(),
		pos: b.ExpHistogram.PositiveBucketCounts.mark(), neg: b.ExpHistogram.NegativeBucketCounts.mark(),
		quantile: b.Summary.Quantile.mark(), quantileValue: b.Summary.QuantileValue.mark(),
	}
}

func (b *Batch) truncateMetrics(m metricsMark) {
	g := &b.Gauge
	g.MetricCommon.truncate(m.gauge)
	g.Value = g.Value[:m.gauge.rows]
	g.Exemplars.truncate(m.gaugeEx)

	s := &b.Sum
	n := m.sum.rows
	s.MetricCommon.truncate(m.sum)
	s.Value, s.AggregationTemporality, s.IsMonotonic = s.Value[:n], s.AggregationTemporality[:n], s.IsMonotonic[:n]
	s.Exemplars.truncate(m.sumEx)

	h := &b.Histogram
	n = m.hist.rows
	h.MetricCommon.truncate(m.hist)
	h.Count, h.Sum, h.Min, h.Max, h.AggregationTemporality = h.Count[:n], h.Sum[:n], h.Min[:n], h.Max[:n], h.AggregationTemporality[:n]
	h.BucketCounts.truncate(m.buckets)
	h.ExplicitBounds.truncate(m.bounds)
	h.Exemplars.truncate(m.histEx)

	e := &b.ExpHistogram
	n = m.exp.rows
	e.MetricCommon.truncate(m.exp)
	e.Count, e.Sum, e.Scale, e.ZeroCount = e.Count[:n], e.Sum[:n], e.Scale[:n], e.ZeroCount[:n]
	e.PositiveOffset, e.NegativeOffset = e.PositiveOffset[:n], e.NegativeOffset[:n]
	e.PositiveBucketCounts.truncate(m.pos)
	e.NegativeBucketCounts.truncate(m.neg)
	e.Min, e.Max, e.AggregationTemporality = e.Min[:n], e.Max[:n], e.AggregationTemporality[:n]
	e.Exemplars.truncate(m.expEx)

	q := &b.Summary
	n = m.summary.rows
	q.MetricCommon.truncate(m.summary)
	q.Count, q.Sum = q.Count[:n], q.Sum[:n]
	q.Quantile.truncate(m.quantile)
	q.QuantileValue.truncate(m.quantileValue)
}

// appendMetricsProto is the fast path; when it declines it rolls back
// and returns an error that is errFallback.
func (b *Batch) appendMetricsProto(p []byte) (int, error) {
	b.dec.src, b.dec.p = &b.Src, b.Src.payload(p)
	m, gen := b.markMetrics(), b.dec.gen
	n, err := b.walkMetricsRequest(p)
	if err != nil {
		b.truncateMetrics(m)
		b.dec.gen = gen
		return 0, err
	}
	return n, nil
}

func (b *Batch) walkMetricsRequest(p []byte) (int, error) {
	n := 0
	it := wire{p: p, want: &tRequest}
	var f field
	for it.next(&f) {
		if f.num != 1 {
			continue
		}
		k, err := b.walkResourceMetrics(f.b)
		if err != nil {
			return 0, err
		}
		n += k
	}
	if it.bad {
		return 0, fieldErr("resource_metrics")
	}
	return n, nil
}

func (b *Batch) walkResourceMetrics(p []byte) (int, error) {
	d := &b.dec
	var resource []byte
	var mc metricCtx
	scopes := d.scopes[:0]
	it := wire{p: p, want: &tResLogs}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			if resource != nil {
				return 0, fieldErr("resource_metrics.resource (repeated)")
			}
			resource = f.b
		case 2:
			scopes = append(scopes, f.b)
		case 3:
			mc.rschema = d.str(f.b)
		case 1000:
			return 0, fieldErr("resource_metrics (deprecated field 1000)")
		}
	}
	d.scopes = scopes
	if it.bad {
		return 0, fieldErr("resource_metrics")
	}
	if err := d.walkResource(resource); err != nil {
		return 0, fieldErr("resource_metrics.resource")
	}
	mc.res = d.pick(d.src)
	n := 0
	// walkScopeMetrics reuses d.records, not d.scopes.
	for i := 0; i < len(scopes); i++ {
		k, err := b.walkScopeMetrics(scopes[i], &mc)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// walkResource flattens a Resource's attributes into the decoder's scratch
// and starts a generation for them.
func (d *decoder) walkResource(resource []byte) error {
	d.resKeys, d.resVals = d.resKeys[:0], d.resVals[:0]
	it := wire{p: resource, want: &tResource}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			if err := d.keyValue(&d.resKeys, &d.resVals, f.b); err != nil {
				return err
			}
		case 3:
			// entity_refs: not kept, but pdata decodes them, so a damaged
			// one must fail here too.
			if err := skim(f.b, &tEntityRef); err != nil {
				return err
			}
		}
	}
	if it.bad {
		return errFallback
	}
	d.resGen = d.next()
	return nil
}

// walkScope flattens an InstrumentationScope into the decoder's scratch
// and starts a generation for its attributes.
func (d *decoder) walkScope(scope []byte) (name, version Str, dropped uint32, err error) {
	d.scopeKeys, d.scopeVals = d.scopeKeys[:0], d.scopeVals[:0]
	it := wire{p: scope, want: &tScope}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			name = d.str(f.b)
		case 2:
			version = d.str(f.b)
		case 3:
			if err := d.keyValue(&d.scopeKeys, &d.scopeVals, f.b); err != nil {
				return Str{}, Str{}, 0, err
			}
		case 4:
			dropped = uint32(f.v)
		}
	}
	if it.bad {
		return Str{}, Str{}, 0, errFallback
	}
	d.scopeGen = d.next()
	return name, version, dropped, nil
}

func (b *Batch) walkScopeMetrics(p []byte, mc *metricCtx) (int, error) {
	d := &b.dec
	var scope []byte
	mc.sschema = Str{}
	metrics := d.records[:0]
	it := wire{p: p, want: &tResLogs}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			if scope != nil {
				return 0, fieldErr("scope_metrics.scope (repeated)")
			}
			scope = f.b
		case 2:
			metrics = append(metrics, f.b)
		case 3:
			mc.sschema = d.str(f.b)
		}
	}
	d.records = metrics
	if it.bad {
		return 0, fieldErr("scope_metrics")
	}
	var err error
	if mc.sname, mc.sver, mc.dropped, err = d.walkScope(scope); err != nil {
		return 0, fieldErr("scope_metrics.scope")
	}
	n := 0
	for _, m := range metrics {
		k, err := b.walkMetric(m, mc)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

func (b *Batch) walkMetric(p []byte, mc *metricCtx) (int, error) {
	d := &b.dec
	var data []byte
	kind := protowire.Number(0)
	mc.name, mc.desc, mc.unit = Str{}, Str{}, Str{}
	it := wire{p: p, want: &tMetric}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			mc.name = d.str(f.b)
		case 2:
			mc.desc = d.str(f.b)
		case 3:
			mc.unit = d.str(f.b)
		case kindGauge, kindSum, kindHistogram, kindExpHistogram, kindSummary:
			if kind != 0 {
				return 0, fieldErr("metric.data (more than one)")
			}
			kind, data = f.num, f.b
		case 12:
			if err := checkKV(f.b); err != nil {
				return 0, fieldErr("metric.metadata")
			}
		}
	}
	if it.bad {
		return 0, fieldErr("metric")
	}
	if kind == 0 {
		return 0, nil
	}
	// The data message's scalars may follow its points on the wire:
	// collect the points first.
	var temporality int32
	var monotonic bool
	points := d.points[:0]
	it = wire{p: data, want: &tPoints}
	for it.next(&f) {
		switch f.num {
		case 1:
			points = append(points, f.b)
		case 2:
			if kind != kindGauge && kind != kindSummary {
				temporality = int32(f.v)
			}
		case 3:
			monotonic = kind == kindSum && f.v != 0
		}
	}
	d.points = points
	if it.bad {
		return 0, fieldErr("metric.data")
	}
	var err error
	for _, pt := range points {
		switch kind {
		case kindGauge:
			err = b.walkNumberPoint(&b.Gauge.MetricCommon, &b.Gauge.Value, &b.Gauge.Exemplars, mc, pt)
		case kindSum:
			r := &b.Sum
			err = b.walkNumberPoint(&r.MetricCommon, &r.Value, &r.Exemplars, mc, pt)
			r.AggregationTemporality = append(r.AggregationTemporality, temporality)
			r.IsMonotonic = append(r.IsMonotonic, monotonic)
		case kindHistogram:
			err = b.walkHistogramPoint(mc, pt, temporality)
		case kindExpHistogram:
			err = b.walkExpHistogramPoint(mc, pt, temporality)
		case kindSummary:
			err = b.walkSummaryPoint(mc, pt)
		}
		if err != nil {
			return 0, err
		}
	}
	return len(points), nil
}

// checkKV checks a KeyValue that is not kept (metric metadata) is one the
// walker would decode.
func checkKV(p []byte) error {
	it := wire{p: p, want: &tKV}
	var f field
	for it.next(&f) {
		switch f.num {
		case 2:
			if err := checkAny(f.b); err != nil {
				return err
			}
		case 3:
			return errFallback
		}
	}
	return it.err()
}

func checkAny(p []byte) error {
	it := wire{p: p, want: &tAny}
	var f field
	for it.next(&f) {
		switch f.num {
		case 5, 6, 8:
			return errFallback
		}
	}
	return it.err()
}

// f64 reads a fixed64 one-byte-tagged field at the head of q, the layout
// of nearly every point's timestamps and values.
func f64(q []byte) (tag byte, v uint64, ok bool) {
	if len(q) < 9 {
		return 0, 0, false
	}
	return q[0], binary.LittleEndian.Uint64(q[1:9]), true
}

func (b *Batch) walkNumberPoint(c *MetricCommon, values *[]float64, ex *Exemplars, mc *metricCtx, p []byte) error {
	d := &b.dec
	var start, ts, flags uint64
	var value float64
	a := &c.Attributes
	it := wire{p: p, want: &tNumberPoint}
	var f field
	for {
		if tag, v, ok := f64(it.p); ok {
			switch tag {
			case 0x11: // 2 start_time_unix_nano
				start, it.p = v, it.p[9:]
				continue
			case 0x19: // 3 time_unix_nano
				ts, it.p = v, it.p[9:]
				continue
			case 0x21: // 4 as_double
				value, it.p = math.Float64frombits(v), it.p[9:]
				continue
			case 0x31: // 6 as_int
				value, it.p = float64(int64(v)), it.p[9:]
				continue
			}
		}
		if !it.next(&f) {
			break
		}
		switch f.num {
		case 2:
			start = f.v
		case 3:
			ts = f.v
		case 4:
			value = math.Float64frombits(f.v)
		case 6:
			value = float64(int64(f.v))
		case 5:
			if err := d.exemplar(ex, f.b); err != nil {
				return err
			}
		case 7:
			if err := d.keyValue(&a.Keys, &a.Values, f.b); err != nil {
				return fieldErr("number_data_point.attributes")
			}
		case 8:
			flags = f.v
		}
	}
	if it.bad {
		return fieldErr("number_data_point")
	}
	a.Offsets = append(a.Offsets, uint64(len(a.Keys)))
	ex.Offsets = append(ex.Offsets, uint64(len(ex.TimeUnix)))
	*values = append(*values, value)
	d.commonRow(c, mc, start, ts, uint32(flags))
	return nil
}

func (d *decoder) exemplar(e *Exemplars, p []byte) error {
	var ts uint64
	var value float64
	var trace, span Str
	a := &e.FilteredAttributes
	it := wire{p: p, want: &tExemplar}
	var f field
	for it.next(&f) {
		switch f.num {
		case 2:
			ts = f.v
		case 3:
			value = math.Float64frombits(f.v)
		case 6:
			value = float64(int64(f.v))
		case 4:
			if len(f.b) != 0 && len(f.b) != 8 {
				return fieldErr("exemplar.span_id")
			}
			span = Str{}
			if len(f.b) == 8 && !allZero(f.b) {
				span = d.src.hex(f.b)
			}
		case 5:
			if len(f.b) != 0 && len(f.b) != 16 {
				return fieldErr("exemplar.trace_id")
			}
			trace = Str{}
			if len(f.b) == 16 && !allZero(f.b) {
				trace = d.src.hex(f.b)
			}
		case 7:
			if err := d.keyValue(&a.Keys, &a.Values, f.b); err != nil {
				return fieldErr("exemplar.filtered_attributes")
			}
		}
	}
	if it.bad {
		return fieldErr("exemplar")
	}
	a.Offsets = append(a.Offsets, uint64(len(a.Keys)))
	e.TimeUnix = append(e.TimeUnix, nanos(ts))
	e.Value = append(e.Value, value)
	e.SpanId = append(e.SpanId, span)
	e.TraceId = append(e.TraceId, trace)
	return nil
}

// packedU64, packedF64 and packedVarint append a packed run of values;
// false if it is malformed.
func packedU64(dst []uint64, p []byte) ([]uint64, bool) {
	if len(p)%8 != 0 {
		return dst, false
	}
	for i := 0; i < len(p); i += 8 {
		dst = append(dst, binary.LittleEndian.Uint64(p[i:]))
	}
	return dst, true
}

func packedF64(dst []float64, p []byte) ([]float64, bool) {
	if len(p)%8 != 0 {
		return dst, false
	}
	for i := 0; i < len(p); i += 8 {
		dst = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(p[i:])))
	}
	return dst, true
}

func packedVarint(dst []uint64, p []byte) ([]uint64, bool) {
	for len(p) > 0 {
		if p[0] < 0x80 {
			dst = append(dst, uint64(p[0]))
			p = p[1:]
			continue
		}
		v, n := protowire.ConsumeVarint(p)
		if n < 0 {
			return dst, false
		}
		dst = append(dst, v)
		p = p[n:]
	}
	return dst, true
}

// zigzag32 decodes a sint32 as pdata does.
func zigzag32(v uint64) int32 {
	return int32(uint32(v>>1) ^ uint32(int32((v&1)<<31)>>31))
}

func (b *Batch) walkHistogramPoint(mc *metricCtx, p []byte, temporality int32) error {
	d := &b.dec
	r := &b.Histogram
	var start, ts, count, flags uint64
	var sum, lo, hi float64
	var seenBuckets, seenBounds bool
	a := &r.Attributes
	it := wire{p: p, want: &tHistPoint}
	var f field
	for it.next(&f) {
		switch f.num {
		case 2:
			start = f.v
		case 3:
			ts = f.v
		case 4:
			count = f.v
		case 5:
			sum = math.Float64frombits(f.v)
		case 11:
			lo = math.Float64frombits(f.v)
		case 12:
			hi = math.Float64frombits(f.v)
		case 10:
			flags = f.v
		case 6:
			var ok bool
			if r.BucketCounts.Values, ok = packedU64(r.BucketCounts.Values, f.b); !ok || seenBuckets {
				return fieldErr("histogram_data_point.bucket_counts")
			}
			seenBuckets = true
		case 7:
			var ok bool
			if r.ExplicitBounds.Values, ok = packedF64(r.ExplicitBounds.Values, f.b); !ok || seenBounds {
				return fieldErr("histogram_data_point.explicit_bounds")
			}
			seenBounds = true
		case 8:
			if err := d.exemplar(&r.Exemplars, f.b); err != nil {
				return err
			}
		case 9:
			if err := d.keyValue(&a.Keys, &a.Values, f.b); err != nil {
				return fieldErr("histogram_data_point.attributes")
			}
		}
	}
	if it.bad {
		return fieldErr("histogram_data_point")
	}
	a.Offsets = append(a.Offsets, uint64(len(a.Keys)))
	r.Exemplars.Offsets = append(r.Exemplars.Offsets, uint64(len(r.Exemplars.TimeUnix)))
	r.BucketCounts.Offsets = append(r.BucketCounts.Offsets, uint64(len(r.BucketCounts.Values)))
	r.ExplicitBounds.Offsets = append(r.ExplicitBounds.Offsets, uint64(len(r.ExplicitBounds.Values)))
	r.Count = append(r.Count, count)
	r.Sum = append(r.Sum, sum)
	r.Min = append(r.Min, lo)
	r.Max = append(r.Max, hi)
	r.AggregationTemporality = append(r.AggregationTemporality, temporality)
	d.commonRow(&r.MetricCommon, mc, start, ts, uint32(flags))
	return nil
}

// buckets appends an ExponentialHistogramDataPoint.Buckets' counts to a
// and returns its offset.
func buckets(a *U64Arrays, p []byte) (int32, error) {
	var offset int32
	var seen bool
	it := wire{p: p, want: &tBuckets}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			offset = zigzag32(f.v)
		case 2:
			var ok bool
			if a.Values, ok = packedVarint(a.Values, f.b); !ok || seen {
				return 0, errFallback
			}
			seen = true
		}
	}
	return offset, it.err()
}

func (b *Batch) walkExpHistogramPoint(mc *metricCtx, p []byte, temporality int32) error {
	d := &b.dec
	r := &b.ExpHistogram
	var start, ts, count, zero, flags uint64
	var sum, lo, hi float64
	var scale, posOff, negOff int32
	var seenPos, seenNeg bool
	a := &r.Attributes
	it := wire{p: p, want: &tExpPoint}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			if err := d.keyValue(&a.Keys, &a.Values, f.b); err != nil {
				return fieldErr("exponential_histogram_data_point.attributes")
			}
		case 2:
			start = f.v
		case 3:
			ts = f.v
		case 4:
			count = f.v
		case 5:
			sum = math.Float64frombits(f.v)
		case 6:
			scale = zigzag32(f.v)
		case 7:
			zero = f.v
		case 8:
			var err error
			if posOff, err = buckets(&r.PositiveBucketCounts, f.b); err != nil || seenPos {
				return fieldErr("exponential_histogram_data_point.positive")
			}
			seenPos = true
		case 9:
			var err error
			if negOff, err = buckets(&r.NegativeBucketCounts, f.b); err != nil || seenNeg {
				return fieldErr("exponential_histogram_data_point.negative")
			}
			seenNeg = true
		case 10:
			flags = f.v
		case 11:
			if err := d.exemplar(&r.Exemplars, f.b); err != nil {
				return err
			}
		case 12:
			lo = math.Float64frombits(f.v)
		case 13:
			hi = math.Float64frombits(f.v)
		}
	}
	if it.bad {
		return fieldErr("exponential_histogram_data_point")
	}
	a.Offsets = append(a.Offsets, uint64(len(a.Keys)))
	r.Exemplars.Offsets = append(r.Exemplars.Offsets, uint64(len(r.Exemplars.TimeUnix)))
	r.PositiveBucketCounts.Offsets = append(r.PositiveBucketCounts.Offsets, uint64(len(r.PositiveBucketCounts.Values)))
	r.NegativeBucketCounts.Offsets = append(r.NegativeBucketCounts.Offsets, uint64(len(r.NegativeBucketCounts.Values)))
	r.Count = append(r.Count, count)
	r.Sum = append(r.Sum, sum)
	r.Scale = append(r.Scale, scale)
	r.ZeroCount = append(r.ZeroCount, zero)
	r.PositiveOffset = append(r.PositiveOffset, posOff)
	r.NegativeOffset = append(r.NegativeOffset, negOff)
	r.Min = append(r.Min, lo)
	r.Max = append(r.Max, hi)
	r.AggregationTemporality = append(r.AggregationTemporality, temporality)
	d.commonRow(&r.MetricCommon, mc, start, ts, uint32(flags))
	return nil
}

func (b *Batch) walkSummaryPoint(mc *metricCtx, p []byte) error {
	d := &b.dec
	r := &b.Summary
	var start, ts, count, flags uint64
	var sum float64
	a := &r.Attributes
	it := wire{p: p, want: &tSummaryPoint}
	var f field
	for it.next(&f) {
		switch f.num {
		case 2:
			start = f.v
		case 3:
			ts = f.v
		case 4:
			count = f.v
		case 5:
			sum = math.Float64frombits(f.v)
		case 6:
			var q, v uint64
			qi := wire{p: f.b, want: &tQuantile}
			var g field
			for qi.next(&g) {
				switch g.num {
				case 1:
					q = g.v
				case 2:
					v = g.v
				}
			}
			if qi.bad {
				return fieldErr("summary_data_point.quantile_values")
			}
			r.Quantile.Values = append(r.Quantile.Values, math.Float64frombits(q))
			r.QuantileValue.Values = append(r.QuantileValue.Values, math.Float64frombits(v))
		case 7:
			if err := d.keyValue(&a.Keys, &a.Values, f.b); err != nil {
				return fieldErr("summary_data_point.attributes")
			}
		case 8:
			flags = f.v
		}
	}
	if it.bad {
		return fieldErr("summary_data_point")
	}
	a.Offsets = append(a.Offsets, uint64(len(a.Keys)))
	r.Quantile.Offsets = append(r.Quantile.Offsets, uint64(len(r.Quantile.Values)))
	r.QuantileValue.Offsets = append(r.QuantileValue.Offsets, uint64(len(r.QuantileValue.Values)))
	r.Count = append(r.Count, count)
	r.Sum = append(r.Sum, sum)
	d.commonRow(&r.MetricCommon, mc, start, ts, uint32(flags))
	return nil
}

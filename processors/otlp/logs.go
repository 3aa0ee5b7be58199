package otlp

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/plog"
)

// LogRows are rows of otel_logs.
type LogRows struct {
	Timestamp          []int64 // unix nanoseconds
	TraceId            []Str
	SpanId             []Str
	TraceFlags         []uint8
	SeverityText       []Str
	SeverityNumber     []uint8
	ServiceName        []Str
	Body               []Str
	ResourceSchemaUrl  []Str
	ScopeSchemaUrl     []Str
	ScopeName          []Str
	ScopeVersion       []Str
	EventName          []Str
	ResourceAttributes SharedAttrs
	ScopeAttributes    SharedAttrs
	LogAttributes      Attrs
	Enrichment
}

// Len is the number of rows.
func (r *LogRows) Len() int { return len(r.Timestamp) }

func (r *LogRows) reset() {
	r.truncate(logsMark{})
	r.ResourceAttributes.reset()
	r.ScopeAttributes.reset()
	r.LogAttributes.reset()
	r.Enrichment.reset()
}

var (
	logsProto plog.ProtoUnmarshaler
	logsJSON  plog.JSONUnmarshaler
)

func (b *Batch) appendLogs(f Format, p []byte) (int, error) {
	if f == FormatProtobuf && !slowPath {
		if n, err := b.appendLogsProto(p); err == nil {
			return n, nil
		}
	}
	return b.appendLogsPdata(f, p)
}

// slowPath forces the pdata path (tests compare the two).
var slowPath = false

func (b *Batch) appendLogsPdata(f Format, p []byte) (int, error) {
	var ld plog.Logs
	var err error
	if f == FormatJSON {
		ld, err = logsJSON.UnmarshalLogs(p)
	} else {
		ld, err = logsProto.UnmarshalLogs(p)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: logs: %v", ErrDecode, err)
	}
	r := &b.Logs
	d := &b.dec
	src := &b.Src
	n := 0
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		res := d.resource(src, rl.Resource())
		rschema := src.clean(rl.SchemaUrl())
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			sc := sl.Scope()
			d.flatten(src, &d.scopeKeys, &d.scopeVals, sc.Attributes())
			d.scopeGen = d.next()
			sname, sver, sschema := src.clean(sc.Name()), src.clean(sc.Version()), src.clean(sl.SchemaUrl())
			lrs := sl.LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				lr := lrs.At(k)
				ts := lr.Timestamp()
				if ts == 0 {
					ts = lr.ObservedTimestamp()
				}
				r.Timestamp = append(r.Timestamp, nanos(uint64(ts)))
				r.TraceId = append(r.TraceId, traceID(src, lr.TraceID()))
				r.SpanId = append(r.SpanId, spanID(src, lr.SpanID()))
				r.TraceFlags = append(r.TraceFlags, uint8(lr.Flags()))
				r.SeverityText = append(r.SeverityText, src.clean(lr.SeverityText()))
				r.SeverityNumber = append(r.SeverityNumber, severity(int32(lr.SeverityNumber())))
				r.ServiceName = append(r.ServiceName, res.service)
				r.Body = append(r.Body, src.Copy(valueString(lr.Body())))
				r.ResourceSchemaUrl = append(r.ResourceSchemaUrl, rschema)
				r.ScopeSchemaUrl = append(r.ScopeSchemaUrl, sschema)
				r.ScopeName = append(r.ScopeName, sname)
				r.ScopeVersion = append(r.ScopeVersion, sver)
				r.EventName = append(r.EventName, src.clean(lr.EventName()))
				r.ResourceAttributes.appendRow(d.resGen, d.resKeys, d.resVals)
				r.ScopeAttributes.appendRow(d.scopeGen, d.scopeKeys, d.scopeVals)
				d.appendAttrs(src, &r.LogAttributes, lr.Attributes())
				r.Enrichment.appendRow(res.env, res.version)
				n++
			}
		}
	}
	return n, nil
}

// severity maps an OTLP severity number (0-24 by the spec) to the UInt8
// column, clamping out-of-range values.
func severity(s int32) uint8 {
	if s < 0 {
		return 0
	}
	if s > 255 {
		return 255
	}
	return uint8(s)
}

package otlp

import (
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// The protobuf logs path walks the wire format straight into columns,
// without building pdata objects: most of a worker's CPU went to
// allocating and collecting them. Strings alias the payload (which the
// caller must not modify while the batch holds rows); invalid UTF-8 is
// copied with replacement. Anything this walker does not handle on its own
// (array and map values, malformed input) makes it roll back and hand the
// request to pdata, which stays the reference: the tests check both paths
// give identical rows.

var errFallback = errors.New("fall back to pdata")

// logsMark remembers column lengths for a rollback.
type logsMark struct {
	rows         int
	logKV, logOf int
	res, scope   sharedMark
}

func (r *LogRows) mark() logsMark {
	return logsMark{rows: r.Len(), logKV: len(r.LogAttributes.Keys), logOf: len(r.LogAttributes.Offsets),
		res: r.ResourceAttributes.mark(), scope: r.ScopeAttributes.mark()}
}

func (r *LogRows) truncate(m logsMark) {
	n := m.rows
	r.Timestamp, r.TraceId, r.SpanId, r.TraceFlags = r.Timestamp[:n], r.TraceId[:n], r.SpanId[:n], r.TraceFlags[:n]
	r.SeverityText, r.SeverityNumber, r.ServiceName, r.Body = r.SeverityText[:n], r.SeverityNumber[:n], r.ServiceName[:n], r.Body[:n]
	r.ResourceSchemaUrl, r.ScopeSchemaUrl, r.ScopeName, r.ScopeVersion = r.ResourceSchemaUrl[:n], r.ScopeSchemaUrl[:n], r.ScopeName[:n], r.ScopeVersion[:n]
	r.EventName = r.EventName[:n]
	r.Environment, r.ServiceVersion = r.Environment[:n], r.ServiceVersion[:n]
	r.DeployId, r.DeployVersion, r.IncidentId = r.DeployId[:n], r.DeployVersion[:n], r.IncidentId[:n]
	trunc := func(a *Attrs, kv, off int) {
		a.Keys, a.Values, a.Offsets = a.Keys[:kv], a.Values[:kv], a.Offsets[:off]
	}
	trunc(&r.LogAttributes, m.logKV, m.logOf)
	r.ResourceAttributes.truncate(m.res)
	r.ScopeAttributes.truncate(m.scope)
}

// appendLogsProto is the fast path; on any trouble it rolls back and
// returns errFallback.
func (b *Batch) appendLogsProto(p []byte) (int, error) {
	r := &b.Logs
	m, gen := r.mark(), b.dec.gen
	n, err := b.walkLogsRequest(p)
	if err != nil {
		r.truncate(m)
		b.dec.gen = gen
		return 0, errFallback
	}
	return n, nil
}

// str aliases b as a string, or copies it with replacement when it is not
// valid UTF-8.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if !utf8.Valid(b) {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return unsafe.String(&b[0], len(b))
}

func (b *Batch) walkLogsRequest(p []byte) (int, error) {
	n := 0
	err := fields(p, typed(tRequest, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) error {
		if num != 1 {
			return nil
		}
		k, err := b.walkResourceLogs(v)
		n += k
		return err
	}))
	return n, err
}

// wireTypes says which wire type each known field of a message has;
// pdata rejects a known field with another type, so the walker falls back
// and lets pdata say so.
type wireTypes map[protowire.Number]protowire.Type

var (
	bytesT = protowire.BytesType
	varT   = protowire.VarintType
	f64T   = protowire.Fixed64Type
	f32T   = protowire.Fixed32Type

	tRequest   = wireTypes{1: bytesT}
	tResLogs   = wireTypes{1: bytesT, 2: bytesT, 3: bytesT}
	tResource  = wireTypes{1: bytesT, 2: varT, 3: bytesT}
	tScope     = wireTypes{1: bytesT, 2: bytesT, 3: bytesT, 4: varT}
	tRecord    = wireTypes{1: f64T, 2: varT, 3: bytesT, 5: bytesT, 6: bytesT, 7: varT, 8: f32T, 9: bytesT, 10: bytesT, 11: f64T, 12: bytesT}
	tKV        = wireTypes{1: bytesT, 2: bytesT}
	tEntityRef = wireTypes{1: bytesT, 2: bytesT, 3: bytesT, 4: bytesT}
	tAny       = wireTypes{1: bytesT, 2: varT, 3: varT, 4: f64T, 5: bytesT, 6: bytesT, 7: bytesT}
)

// typed wraps a field callback with the message's wire-type check.
func typed(want wireTypes, f func(num protowire.Number, typ protowire.Type, b []byte, v uint64) error) func(protowire.Number, protowire.Type, []byte, uint64) error {
	return func(num protowire.Number, typ protowire.Type, b []byte, v uint64) error {
		if t, ok := want[num]; ok && t != typ {
			return errFallback
		}
		return f(num, typ, b, v)
	}
}

// fields iterates a message's fields, calling f with the bytes of
// length-delimited fields and the raw value of varint and fixed ones.
func fields(p []byte, f func(num protowire.Number, typ protowire.Type, b []byte, v uint64) error) error {
	for len(p) > 0 {
		num, typ, l := protowire.ConsumeTag(p)
		if l < 0 {
			return errFallback
		}
		p = p[l:]
		var b []byte
		var v uint64
		switch typ {
		case protowire.BytesType:
			b, l = protowire.ConsumeBytes(p)
		case protowire.VarintType:
			v, l = protowire.ConsumeVarint(p)
		case protowire.Fixed64Type:
			v, l = protowire.ConsumeFixed64(p)
		case protowire.Fixed32Type:
			var v32 uint32
			v32, l = protowire.ConsumeFixed32(p)
			v = uint64(v32)
		default:
			// Groups: pdata rejects them; let it say so.
			return errFallback
		}
		if l < 0 {
			return errFallback
		}
		p = p[l:]
		if err := f(num, typ, b, v); err != nil {
			return err
		}
	}
	return nil
}

func (b *Batch) walkResourceLogs(p []byte) (int, error) {
	d := &b.dec
	// The resource and schema URL may come after the scope logs on the
	// wire; collect them first.
	var resource []byte
	var schema string
	var scopes [][]byte
	err := fields(p, typed(tResLogs, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if resource != nil {
				return errFallback // repeated: protobuf merges them; leave that to pdata
			}
			resource = v
		case 1000:
			return errFallback // deprecated scope logs: pdata's business
		case 2:
			scopes = append(scopes, v)
		case 3:
			schema = str(v)
		}
		return nil
	}))
	if err != nil {
		return 0, err
	}
	d.resKeys, d.resVals = d.resKeys[:0], d.resVals[:0]
	if err := fields(resource, typed(tResource, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			return d.keyValue(&d.resKeys, &d.resVals, v)
		case 3:
			// entity_refs: not kept, but pdata decodes them, so a damaged
			// one must fail here too.
			return fields(v, typed(tEntityRef, func(protowire.Number, protowire.Type, []byte, uint64) error { return nil }))
		}
		return nil
	})); err != nil {
		return 0, err
	}
	d.resGen = d.next()
	res := d.pick()
	n := 0
	for _, sp := range scopes {
		k, err := b.walkScopeLogs(sp, res, schema)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// pick finds the fields rows repeat among the flattened resource
// attributes: service.name, service.version and the environment
// (deployment.environment.name, else the older deployment.environment).
func (d *decoder) pick() resourceInfo {
	var ri resourceInfo
	legacy := ""
	for i, k := range d.resKeys {
		switch k {
		case "service.name":
			ri.service = d.resVals[i]
		case "deployment.environment.name":
			ri.env = d.resVals[i]
		case "deployment.environment":
			legacy = d.resVals[i]
		case "service.version":
			ri.version = d.resVals[i]
		}
	}
	if ri.env == "" {
		ri.env = legacy
	}
	return ri
}

func (b *Batch) walkScopeLogs(p []byte, res resourceInfo, rschema string) (int, error) {
	d := &b.dec
	var scope []byte
	var schema string
	var records [][]byte
	if err := fields(p, typed(tResLogs, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if scope != nil {
				return errFallback
			}
			scope = v
		case 2:
			records = append(records, v)
		case 3:
			schema = str(v)
		}
		return nil
	})); err != nil {
		return 0, err
	}
	var sname, sver string
	d.scopeKeys, d.scopeVals = d.scopeKeys[:0], d.scopeVals[:0]
	if err := fields(scope, typed(tScope, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			sname = str(v)
		case 2:
			sver = str(v)
		case 3:
			return d.keyValue(&d.scopeKeys, &d.scopeVals, v)
		}
		return nil
	})); err != nil {
		return 0, err
	}
	d.scopeGen = d.next()
	r := &b.Logs
	for _, rec := range records {
		if err := b.walkLogRecord(rec); err != nil {
			return 0, err
		}
		r.ServiceName = append(r.ServiceName, res.service)
		r.ResourceSchemaUrl = append(r.ResourceSchemaUrl, rschema)
		r.ScopeSchemaUrl = append(r.ScopeSchemaUrl, schema)
		r.ScopeName = append(r.ScopeName, sname)
		r.ScopeVersion = append(r.ScopeVersion, sver)
		r.ResourceAttributes.appendRow(d.resGen, d.resKeys, d.resVals)
		r.ScopeAttributes.appendRow(d.scopeGen, d.scopeKeys, d.scopeVals)
		r.Enrichment.appendRow(res.env, res.version)
	}
	return len(records), nil
}

func (b *Batch) walkLogRecord(p []byte) error {
	d := &b.dec
	r := &b.Logs
	var ts, observed uint64
	var sev uint64
	var sevText, body, event, trace, span string
	var flags uint64
	var seenBody bool
	la := &r.LogAttributes
	err := fields(p, typed(tRecord, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 1:
			ts = x
		case 11:
			observed = x
		case 2:
			sev = x
		case 3:
			sevText = str(v)
		case 5:
			if seenBody {
				return errFallback
			}
			seenBody = true
			s, err := anyString(v)
			if err != nil {
				return err
			}
			body = s
		case 6:
			return d.keyValue(&la.Keys, &la.Values, v)
		case 8:
			flags = x
		case 9:
			if len(v) != 0 && len(v) != 16 {
				return errFallback // pdata rejects other lengths
			}
			trace = ""
			if len(v) == 16 && !allZero(v) {
				trace = hexString(v)
			}
		case 10:
			if len(v) != 0 && len(v) != 8 {
				return errFallback
			}
			span = ""
			if len(v) == 8 && !allZero(v) {
				span = hexString(v)
			}
		case 12:
			event = str(v)
		}
		return nil
	}))
	if err != nil {
		return err
	}
	la.Offsets = append(la.Offsets, uint64(len(la.Keys)))
	if ts == 0 {
		ts = observed
	}
	r.Timestamp = append(r.Timestamp, nanos(ts))
	r.TraceId = append(r.TraceId, trace)
	r.SpanId = append(r.SpanId, span)
	r.TraceFlags = append(r.TraceFlags, uint8(flags))
	r.SeverityText = append(r.SeverityText, sevText)
	r.SeverityNumber = append(r.SeverityNumber, severity(int32(sev)))
	r.Body = append(r.Body, body)
	r.EventName = append(r.EventName, event)
	return nil
}

// keyValue appends one KeyValue's key and rendered value.
func (d *decoder) keyValue(keys, vals *[]string, p []byte) error {
	var key, val string
	var seenValue bool
	err := fields(p, typed(tKV, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			key = str(v)
		case 2:
			if seenValue {
				return errFallback
			}
			seenValue = true
			s, err := anyString(v)
			if err != nil {
				return err
			}
			val = s
		case 3:
			return errFallback // key_strindex: dictionary encoding, not ours
		}
		return nil
	}))
	if err != nil {
		return err
	}
	*keys = append(*keys, key)
	*vals = append(*vals, val)
	return nil
}

// anyString renders an AnyValue as valueString does; arrays and maps fall
// back to pdata.
func anyString(p []byte) (string, error) {
	var out string
	err := fields(p, typed(tAny, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch num {
		case 1:
			out = str(v)
		case 2:
			out = strconv.FormatBool(x != 0)
		case 3:
			out = strconv.FormatInt(int64(x), 10)
		case 4:
			out = formatDouble(math.Float64frombits(x))
		case 7:
			out = base64.StdEncoding.EncodeToString(v)
		case 5, 6, 8:
			return errFallback // arrays, maps, dictionary strings: pdata renders them
		}
		return nil
	}))
	return out, err
}

// formatDouble renders a double the way pdata's AsString does (the
// ECMAScript number-to-string rules JSON encoders follow).
func formatDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	var buf [32]byte
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(buf[:0], f, format, -1, 64)
	if format == 'e' {
		// e-07 -> e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return string(b)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

func hexString(b []byte) string {
	out := make([]byte, len(b)*2)
	for i, c := range b {
		out[2*i], out[2*i+1] = hexDigits[c>>4], hexDigits[c&15]
	}
	return unsafe.String(&out[0], len(out))
}

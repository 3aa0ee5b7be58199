package otlp

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"strconv"

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
	r.DeployId, r.DeployVersion = r.DeployId[:n], r.DeployVersion[:n]
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
	b.dec.src, b.dec.p = &b.Src, b.Src.payload(p)
	m, gen := r.mark(), b.dec.gen
	n, err := b.walkLogsRequest(p)
	if err != nil {
		r.truncate(m)
		b.dec.gen = gen
		return 0, errFallback
	}
	return n, nil
}

// str names b, part of the payload being walked (see Sources.str).
func (d *decoder) str(b []byte) Str { return d.src.str(&d.p, b) }

func (b *Batch) walkLogsRequest(p []byte) (int, error) {
	n := 0
	it := wire{p: p, want: &tRequest}
	var f field
	for it.next(&f) {
		if f.num != 1 {
			continue
		}
		k, err := b.walkResourceLogs(f.b)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, it.err()
}

// wireTypes says which wire type each known field (1-15) of a message has,
// as the type plus one (zero: unknown field); pdata rejects a known field
// with another type, so the walker falls back and lets pdata say so. An
// array, not a map: it is consulted for every field of every record.
type wireTypes [16]int8

func types(m map[protowire.Number]protowire.Type) wireTypes {
	var t wireTypes
	for n, typ := range m {
		t[n] = int8(typ) + 1
	}
	return t
}

var (
	bytesT = protowire.BytesType
	varT   = protowire.VarintType
	f64T   = protowire.Fixed64Type
	f32T   = protowire.Fixed32Type

	tRequest   = types(map[protowire.Number]protowire.Type{1: bytesT})
	tResLogs   = types(map[protowire.Number]protowire.Type{1: bytesT, 2: bytesT, 3: bytesT})
	tResource  = types(map[protowire.Number]protowire.Type{1: bytesT, 2: varT, 3: bytesT})
	tScope     = types(map[protowire.Number]protowire.Type{1: bytesT, 2: bytesT, 3: bytesT, 4: varT})
	tRecord    = types(map[protowire.Number]protowire.Type{1: f64T, 2: varT, 3: bytesT, 5: bytesT, 6: bytesT, 7: varT, 8: f32T, 9: bytesT, 10: bytesT, 11: f64T, 12: bytesT})
	tKV        = types(map[protowire.Number]protowire.Type{1: bytesT, 2: bytesT})
	tEntityRef = types(map[protowire.Number]protowire.Type{1: bytesT, 2: bytesT, 3: bytesT, 4: bytesT})
	tAny       = types(map[protowire.Number]protowire.Type{1: bytesT, 2: varT, 3: varT, 4: f64T, 5: bytesT, 6: bytesT, 7: bytesT})
)

// field is one field of a message: the bytes of a length-delimited one,
// the raw value of a varint or fixed one.
type field struct {
	num protowire.Number
	typ protowire.Type
	b   []byte
	v   uint64
}

// wire iterates a message's fields without allocating: a loop over next
// replaces a callback per field, which cost a closure allocation per
// record and an indirect call per field.
type wire struct {
	p    []byte
	want *wireTypes
	bad  bool
}

// next reads the next field into f; it returns false at the end or on
// malformed input or a known field of the wrong wire type (see err).
func (w *wire) next(f *field) bool {
	if len(w.p) == 0 || w.bad {
		return false
	}
	var num protowire.Number
	var typ protowire.Type
	var l int
	if c := w.p[0]; c < 0x80 && c >= 8 {
		// One-byte tag: every field OTLP logs define.
		num, typ, l = protowire.Number(c>>3), protowire.Type(c&7), 1
	} else if num, typ, l = protowire.ConsumeTag(w.p); l < 0 {
		w.bad = true
		return false
	}
	p := w.p[l:]
	f.num, f.typ, f.b, f.v = num, typ, nil, 0
	switch typ {
	case protowire.BytesType:
		if len(p) > 0 && p[0] < 0x80 && int(p[0]) < len(p) {
			// One-byte length: most keys, values and bodies.
			n := int(p[0])
			f.b, l = p[1:1+n:1+n], 1+n
			break
		}
		f.b, l = protowire.ConsumeBytes(p)
	case protowire.VarintType:
		f.v, l = protowire.ConsumeVarint(p)
	case protowire.Fixed64Type:
		f.v, l = protowire.ConsumeFixed64(p)
	case protowire.Fixed32Type:
		var v32 uint32
		v32, l = protowire.ConsumeFixed32(p)
		f.v = uint64(v32)
	default:
		// Groups: pdata rejects them; let it say so.
		l = -1
	}
	if l < 0 || (num < 16 && w.want[num] != 0 && w.want[num] != int8(typ)+1) {
		w.bad = true
		return false
	}
	w.p = p[l:]
	return true
}

// err is errFallback when iteration stopped on bad input.
func (w *wire) err() error {
	if w.bad {
		return errFallback
	}
	return nil
}

// skim checks that a message we do not keep is well formed, as pdata
// would when decoding it.
func skim(p []byte, want *wireTypes) error {
	it := wire{p: p, want: want}
	var f field
	for it.next(&f) {
	}
	return it.err()
}

func (b *Batch) walkResourceLogs(p []byte) (int, error) {
	d := &b.dec
	// The resource and schema URL may come after the scope logs on the
	// wire; collect them first.
	var resource []byte
	var schema Str
	scopes := d.scopes[:0]
	it := wire{p: p, want: &tResLogs}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			if resource != nil {
				return 0, errFallback // repeated: protobuf merges them; leave that to pdata
			}
			resource = f.b
		case 1000:
			return 0, errFallback // deprecated scope logs: pdata's business
		case 2:
			scopes = append(scopes, f.b)
		case 3:
			schema = d.str(f.b)
		}
	}
	d.scopes = scopes
	if it.bad {
		return 0, errFallback
	}
	if err := d.walkResource(resource); err != nil {
		return 0, err
	}
	res := d.pick(d.src)
	n := 0
	// walkScopeLogs reuses d.records, not d.scopes: iterate a copy of the
	// slice header, which nothing below appends to.
	for i := 0; i < len(scopes); i++ {
		k, err := b.walkScopeLogs(scopes[i], res, schema)
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
func (d *decoder) pick(src *Sources) resourceInfo {
	var ri resourceInfo
	var legacy Str
	for i, k := range d.resKeys {
		switch src.String(k) {
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
	if ri.env.Len == 0 {
		ri.env = legacy
	}
	return ri
}

func (b *Batch) walkScopeLogs(p []byte, res resourceInfo, rschema Str) (int, error) {
	d := &b.dec
	var scope []byte
	var schema Str
	records := d.records[:0]
	it := wire{p: p, want: &tResLogs}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			if scope != nil {
				return 0, errFallback
			}
			scope = f.b
		case 2:
			records = append(records, f.b)
		case 3:
			schema = d.str(f.b)
		}
	}
	d.records = records
	if it.bad {
		return 0, errFallback
	}
	var sname, sver Str
	d.scopeKeys, d.scopeVals = d.scopeKeys[:0], d.scopeVals[:0]
	it = wire{p: scope, want: &tScope}
	for it.next(&f) {
		switch f.num {
		case 1:
			sname = d.str(f.b)
		case 2:
			sver = d.str(f.b)
		case 3:
			if err := d.keyValue(&d.scopeKeys, &d.scopeVals, f.b); err != nil {
				return 0, err
			}
		}
	}
	if it.bad {
		return 0, errFallback
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
	var sevText, body, event, trace, span Str
	var flags uint64
	var seenBody bool
	la := &r.LogAttributes
	it := wire{p: p, want: &tRecord}
	var f field
	for {
		// The fields nearly every record has, in the layout encoders
		// write (one-byte tags and lengths), are read here without the
		// general iterator; anything else takes it.
		if q := it.p; len(q) >= 2 {
			switch q[0] {
			case 0x09, 0x59: // 1 time_unix_nano, 11 observed_time_unix_nano: fixed64
				if len(q) < 9 {
					break
				}
				v := binary.LittleEndian.Uint64(q[1:9])
				if q[0] == 0x09 {
					ts = v
				} else {
					observed = v
				}
				it.p = q[9:]
				continue
			case 0x10: // 2 severity_number: varint
				if q[1] >= 0x80 {
					break
				}
				sev, it.p = uint64(q[1]), q[2:]
				continue
			case 0x32: // 6 attributes
				n := int(q[1])
				if n >= 0x80 || 2+n > len(q) {
					break
				}
				it.p = q[2+n:]
				if err := d.keyValue(&la.Keys, &la.Values, q[2:2+n]); err != nil {
					return err
				}
				continue
			case 0x2a: // 5 body
				n := int(q[1])
				if n >= 0x80 || 2+n > len(q) || seenBody {
					break
				}
				it.p, seenBody = q[2+n:], true
				s, err := d.anyString(q[2 : 2+n])
				if err != nil {
					return err
				}
				body = s
				continue
			case 0x1a: // 3 severity_text
				n := int(q[1])
				if n >= 0x80 || 2+n > len(q) {
					break
				}
				sevText, it.p = d.str(q[2:2+n]), q[2+n:]
				continue
			}
		}
		if !it.next(&f) {
			break
		}
		switch f.num {
		case 1:
			ts = f.v
		case 11:
			observed = f.v
		case 2:
			sev = f.v
		case 3:
			sevText = d.str(f.b)
		case 5:
			if seenBody {
				return errFallback
			}
			seenBody = true
			s, err := d.anyString(f.b)
			if err != nil {
				return err
			}
			body = s
		case 6:
			if err := d.keyValue(&la.Keys, &la.Values, f.b); err != nil {
				return err
			}
		case 8:
			flags = f.v
		case 9:
			if len(f.b) != 0 && len(f.b) != 16 {
				return errFallback // pdata rejects other lengths
			}
			trace = Str{}
			if len(f.b) == 16 && !allZero(f.b) {
				trace = d.src.hex(f.b)
			}
		case 10:
			if len(f.b) != 0 && len(f.b) != 8 {
				return errFallback
			}
			span = Str{}
			if len(f.b) == 8 && !allZero(f.b) {
				span = d.src.hex(f.b)
			}
		case 12:
			event = d.str(f.b)
		}
	}
	if it.bad {
		return errFallback
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
func (d *decoder) keyValue(keys, vals *[]Str, p []byte) error {
	if k, v, ok := stringKV(p); ok {
		*keys = append(*keys, d.str(k))
		*vals = append(*vals, d.str(v))
		return nil
	}
	var key, val Str
	var seenValue bool
	it := wire{p: p, want: &tKV}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			key = d.str(f.b)
		case 2:
			if seenValue {
				return errFallback
			}
			seenValue = true
			s, err := d.anyString(f.b)
			if err != nil {
				return err
			}
			val = s
		case 3:
			return errFallback // key_strindex: dictionary encoding, not ours
		}
	}
	if it.bad {
		return errFallback
	}
	*keys = append(*keys, key)
	*vals = append(*vals, val)
	return nil
}

// stringKV reads the layout nearly every attribute has, a key and a short
// string value, in one pass: {1: key, 2: {1: string}}, every length one
// byte, nothing else in either message; or the same with the value first,
// as pdata (and so the Collector) writes it. Anything else goes the
// general way; the result is the same either way (the fuzz tests hold them
// to pdata).
func stringKV(p []byte) (key, val []byte, ok bool) {
	if len(p) < 2 || p[1] >= 0x80 || 2+int(p[1]) > len(p) {
		return nil, nil, false
	}
	first, rest := p[2:2+int(p[1])], p[2+int(p[1]):]
	switch p[0] {
	case 0x0a: // key, then value
		if v, ok := stringValue(rest); ok {
			return first, v, true
		}
	case 0x12: // value, then key
		if len(rest) < 2 || rest[0] != 0x0a || rest[1] >= 0x80 || 2+int(rest[1]) != len(rest) {
			return nil, nil, false
		}
		if v, ok := stringAny(first); ok {
			return rest[2:], v, true
		}
	}
	return nil, nil, false
}

// stringValue reads {2: {1: string}} with one-byte lengths, all of q.
func stringValue(q []byte) ([]byte, bool) {
	if len(q) < 4 || q[0] != 0x12 || q[1] >= 0x80 || 2+int(q[1]) != len(q) {
		return nil, false
	}
	return stringAny(q[2:])
}

// stringAny reads an AnyValue {1: string} with a one-byte length, all of q.
func stringAny(q []byte) ([]byte, bool) {
	if len(q) < 2 || q[0] != 0x0a || q[1] >= 0x80 || 2+int(q[1]) != len(q) {
		return nil, false
	}
	return q[2:], true
}

// anyString renders an AnyValue as valueString does; arrays and maps fall
// back to pdata.
func (d *decoder) anyString(p []byte) (Str, error) {
	if len(p) >= 2 && p[0] == 0x0a && p[1] < 0x80 && 2+int(p[1]) == len(p) {
		return d.str(p[2:]), nil // a string, one-byte length: nearly every body
	}
	var out Str
	it := wire{p: p, want: &tAny}
	var f field
	for it.next(&f) {
		switch f.num {
		case 1:
			out = d.str(f.b)
		case 2:
			out = d.src.Copy(strconv.FormatBool(f.v != 0))
		case 3:
			out = d.src.int(int64(f.v))
		case 4:
			var buf [32]byte
			out = d.src.bytes(appendDouble(buf[:0], math.Float64frombits(f.v)))
		case 7:
			out = Str{}
			if len(f.b) > 0 {
				var b []byte
				b, out = d.src.alloc(base64.StdEncoding.EncodedLen(len(f.b)))
				base64.StdEncoding.Encode(b, f.b)
			}
		case 5, 6, 8:
			return Str{}, errFallback // arrays, maps, dictionary strings: pdata renders them
		}
	}
	return out, it.err()
}

// appendDouble appends f rendered the way pdata's AsString does (the
// ECMAScript number-to-string rules JSON encoders follow) to b.
func appendDouble(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-07 -> e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

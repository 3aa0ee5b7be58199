package otlp

import (
	"math"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// decoder holds scratch space reused across requests.
type decoder struct {
	resKeys, resVals     []Str
	scopeKeys, scopeVals []Str
	// Generations name the resource and scope maps in the scratch above,
	// so SharedAttrs stores each once.
	gen, resGen, scopeGen uint32
	// Scratch of the wire walker: the scope and record messages of the
	// resource and scope being walked, and rendered strings.
	scopes, records [][]byte
	points          [][]byte // of the metric being walked
	// The batch's sources and the payload being walked.
	src *Sources
	p   payload
}

func (d *decoder) next() uint32 {
	d.gen++
	if d.gen == 0 { // wrapped: 0 means none
		d.gen = 1
	}
	return d.gen
}

// resourceInfo is what every row of a resource repeats.
type resourceInfo struct {
	service, env, version Str
}

// resource flattens a resource's attributes into the decoder's scratch
// and picks out the fields rows carry on their own.
func (d *decoder) resource(src *Sources, r pcommon.Resource) resourceInfo {
	d.flatten(src, &d.resKeys, &d.resVals, r.Attributes())
	d.resGen = d.next()
	return d.pick(src)
}

// flatten copies a map of a pdata object into the batch.
func (d *decoder) flatten(src *Sources, keys, vals *[]Str, m pcommon.Map) {
	k, v := (*keys)[:0], (*vals)[:0]
	for key, val := range m.All() {
		k = append(k, src.clean(key))
		v = append(v, src.Copy(valueString(val)))
	}
	*keys, *vals = k, v
}

// appendAttrs appends one row of a map column.
func (d *decoder) appendAttrs(src *Sources, a *Attrs, m pcommon.Map) {
	for key, val := range m.All() {
		a.Keys = append(a.Keys, src.clean(key))
		a.Values = append(a.Values, src.Copy(valueString(val)))
	}
	a.Offsets = append(a.Offsets, uint64(len(a.Keys)))
}

// valueString renders an attribute or body value: strings as they are,
// everything else as pdata's AsString (JSON for maps and slices).
func valueString(v pcommon.Value) string {
	if v.Type() == pcommon.ValueTypeStr {
		return clean(v.Str())
	}
	if v.Type() == pcommon.ValueTypeEmpty {
		return ""
	}
	return clean(v.AsString())
}

// clean replaces invalid UTF-8; valid strings (nearly all) pass untouched.
func clean(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// nanos converts an OTLP timestamp to the int64 nanoseconds of
// DateTime64(9), clamping what it cannot hold.
func nanos(t uint64) int64 {
	if t > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(t)
}

func traceID(src *Sources, id pcommon.TraceID) Str {
	if id.IsEmpty() {
		return Str{}
	}
	return src.hex(id[:])
}

func spanID(src *Sources, id pcommon.SpanID) Str {
	if id.IsEmpty() {
		return Str{}
	}
	return src.hex(id[:])
}

package otlp

import (
	"encoding/hex"
	"math"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// decoder holds scratch space reused across requests.
type decoder struct {
	resKeys, resVals     []string
	scopeKeys, scopeVals []string
	// Generations name the resource and scope maps in the scratch above,
	// so SharedAttrs stores each once.
	gen, resGen, scopeGen uint32
	// Scratch of the wire walker: the scope and record messages of the
	// resource and scope being walked, and rendered strings.
	scopes, records [][]byte
	text            text
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
	service, env, version string
}

// resource flattens a resource's attributes into the decoder's scratch
// and picks out the fields rows carry on their own.
func (d *decoder) resource(r pcommon.Resource) resourceInfo {
	d.flatten(&d.resKeys, &d.resVals, r.Attributes())
	d.resGen = d.next()
	return d.pick()
}

func (d *decoder) flatten(keys, vals *[]string, m pcommon.Map) {
	k, v := (*keys)[:0], (*vals)[:0]
	for key, val := range m.All() {
		k = append(k, clean(key))
		v = append(v, valueString(val))
	}
	*keys, *vals = k, v
}

// appendAttrs appends one row of a map column.
func (d *decoder) appendAttrs(a *Attrs, m pcommon.Map) {
	for key, val := range m.All() {
		a.Keys = append(a.Keys, clean(key))
		a.Values = append(a.Values, valueString(val))
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

func traceID(id pcommon.TraceID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

func spanID(id pcommon.SpanID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

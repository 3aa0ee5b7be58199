// Package otlp decodes OTLP export requests (logs and metrics, protobuf or
// JSON) into columnar rows shaped like the OpenTelemetry Collector's
// ClickHouse exporter tables.
//
// A Batch holds plain Go columns, one slice per table column, reused
// across batches: Reset keeps every slice's capacity, so a worker in steady
// state decodes without growing memory. Attribute maps are stored flat
// (keys, values and per-row end offsets), the layout ClickHouse's Map
// columns have on the wire, so a sink copies them without building a Go map
// per row. Strings are Strs, references into the decoded requests' memory
// (Batch.Src resolves them): nothing is copied per record, and the columns
// hold no pointers for the garbage collector to scan.
//
// Decoding is all or nothing: protobuf logs and metrics are walked straight
// into the columns (fastlogs.go, fastmetrics.go), which are rolled back if
// the walker meets anything it does not handle, and the request is then
// decoded through pdata, unmarshalled completely before any row is
// appended; so a bad message never leaves half its rows in the batch.
//
// Defined outcomes for awkward input:
//   - a log record whose Timestamp is 0 takes its ObservedTimestamp (as the
//     Collector's exporter does); both 0 stays 0 (1970-01-01).
//   - timestamps beyond what DateTime64(9) holds (after 2262-04-11) are
//     clamped to its maximum.
//   - NaN and ±Inf values are stored as they are (Float64 holds them).
//   - invalid UTF-8 in strings is replaced by U+FFFD, never an error.
//   - attribute values that are not strings are rendered as pdata's
//     AsString does: decimal ints, shortest round-trip doubles, base64
//     bytes, JSON for arrays and maps (in their order on the wire).
//   - an empty request appends no row and is not an error.
package otlp

import (
	"errors"
	"fmt"
)

// Format is a payload encoding.
type Format uint8

const (
	FormatAuto     Format = iota // JSON if the first non-space byte is '{', else protobuf
	FormatProtobuf               // application/x-protobuf
	FormatJSON                   // application/json
)

// Signal is the kind of export request.
type Signal uint8

const (
	SignalLogs Signal = iota + 1
	SignalMetrics
)

func (s Signal) String() string {
	switch s {
	case SignalLogs:
		return "logs"
	case SignalMetrics:
		return "metrics"
	}
	return fmt.Sprintf("signal(%d)", uint8(s))
}

// ErrDecode wraps every decoding failure; such an error is permanent.
var ErrDecode = errors.New("undecodable OTLP payload")

// Batch holds decoded rows for every telemetry table.
type Batch struct {
	Logs         LogRows
	Gauge        GaugeRows
	Sum          SumRows
	Histogram    HistogramRows
	ExpHistogram ExpHistogramRows
	Summary      SummaryRows

	// Src holds what the rows' Strs point into.
	Src Sources

	dec decoder
}

// NewBatch returns an empty batch.
func NewBatch() *Batch { return &Batch{} }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.Src.reset()
	b.Logs.reset()
	b.Gauge.reset()
	b.Sum.reset()
	b.Histogram.reset()
	b.ExpHistogram.reset()
	b.Summary.reset()
}

// Records is the number of rows over all tables.
func (b *Batch) Records() int {
	return b.Logs.Len() + b.Gauge.Len() + b.Sum.Len() + b.Histogram.Len() + b.ExpHistogram.Len() + b.Summary.Len()
}

// Append decodes one export request and appends its rows. On error nothing
// is appended and the error wraps ErrDecode.
func (b *Batch) Append(sig Signal, f Format, payload []byte) (int, error) {
	if f == FormatAuto {
		f = detect(payload)
	}
	switch sig {
	case SignalLogs:
		return b.appendLogs(f, payload)
	case SignalMetrics:
		return b.appendMetrics(f, payload)
	}
	return 0, fmt.Errorf("%w: unknown signal %d", ErrDecode, sig)
}

// detect tells JSON from protobuf: a JSON request is an object, and no
// valid ExportLogs/MetricsServiceRequest protobuf starts with '{' (0x7b is
// field 15, wire type 3, which the messages do not use).
func detect(p []byte) Format {
	for _, c := range p {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return FormatJSON
		}
		break
	}
	return FormatProtobuf
}

// Attrs is a column of attribute maps stored flat: row i holds
// Keys[Offsets[i-1]:Offsets[i]] and the same range of Values.
type Attrs struct {
	Keys, Values []Str
	Offsets      []uint64
}

func (a *Attrs) reset() {
	a.Keys, a.Values, a.Offsets = a.Keys[:0], a.Values[:0], a.Offsets[:0]
}

// Row returns row i as key/value pairs (for tests and debugging).
func (a *Attrs) Row(src *Sources, i int) [][2]string {
	k, v := a.Span(i)
	return pairs(src, k, v)
}

func pairs(src *Sources, k, v []Str) [][2]string {
	out := make([][2]string, len(k))
	for j := range k {
		out[j] = [2]string{src.String(k[j]), src.String(v[j])}
	}
	return out
}

// Span returns row i's keys and values.
func (a *Attrs) Span(i int) (keys, values []Str) {
	var from uint64
	if i > 0 {
		from = a.Offsets[i-1]
	}
	return a.Keys[from:a.Offsets[i]], a.Values[from:a.Offsets[i]]
}

// SharedAttrs is a map column whose rows repeat a few distinct maps: the
// attributes of a resource or scope, the same on every record of it. Each
// distinct map is stored once and every row names its span, so a batch
// holds 8 bytes per row instead of the whole map per row.
type SharedAttrs struct {
	Keys, Values []Str
	From, To     []uint32 // row i is Keys[From[i]:To[i]]

	gen, from, to uint32 // the map last stored, by decoder generation
}

func (a *SharedAttrs) reset() {
	a.Keys, a.Values = a.Keys[:0], a.Values[:0]
	a.From, a.To = a.From[:0], a.To[:0]
	a.gen, a.from, a.to = 0, 0, 0
}

// appendRow adds a row holding the map of generation gen, storing the map
// only when it differs from the previous row's.
func (a *SharedAttrs) appendRow(gen uint32, keys, values []Str) {
	if gen != a.gen || len(a.From) == 0 {
		a.from = uint32(len(a.Keys))
		a.Keys = append(a.Keys, keys...)
		a.Values = append(a.Values, values...)
		a.to, a.gen = uint32(len(a.Keys)), gen
	}
	a.From = append(a.From, a.from)
	a.To = append(a.To, a.to)
}

// Len is the number of rows.
func (a *SharedAttrs) Len() int { return len(a.From) }

// Span returns row i's keys and values.
func (a *SharedAttrs) Span(i int) (keys, values []Str) {
	return a.Keys[a.From[i]:a.To[i]], a.Values[a.From[i]:a.To[i]]
}

// Row returns row i as key/value pairs (for tests and debugging).
func (a *SharedAttrs) Row(src *Sources, i int) [][2]string {
	k, v := a.Span(i)
	return pairs(src, k, v)
}

type sharedMark struct {
	kv, rows      int
	gen, from, to uint32
}

func (a *SharedAttrs) mark() sharedMark {
	return sharedMark{kv: len(a.Keys), rows: len(a.From), gen: a.gen, from: a.from, to: a.to}
}

func (a *SharedAttrs) truncate(m sharedMark) {
	a.Keys, a.Values, a.From, a.To = a.Keys[:m.kv], a.Values[:m.kv], a.From[:m.rows], a.To[:m.rows]
	a.gen, a.from, a.to = m.gen, m.from, m.to
}

// Enrichment holds faultline's per-row columns that link a record to the
// release that was live, plus what a row needs for that lookup. (The
// incident a row falls in is not written: the tables read it through the
// incident_spans dictionary.)
type Enrichment struct {
	// Environment is the deployment.environment.name (or the older
	// deployment.environment) resource attribute; ServiceVersion is
	// service.version. Not table columns of their own: kept for enrichment
	// and detection, which run per row.
	Environment    []Str
	ServiceVersion []Str
	DeployId       []Str
	DeployVersion  []Str
}

func (e *Enrichment) reset() {
	e.Environment, e.ServiceVersion = e.Environment[:0], e.ServiceVersion[:0]
	e.DeployId, e.DeployVersion = e.DeployId[:0], e.DeployVersion[:0]
}

func (e *Enrichment) appendRow(env, version Str) {
	e.Environment = append(e.Environment, env)
	e.ServiceVersion = append(e.ServiceVersion, version)
	e.DeployId = append(e.DeployId, Str{})
	e.DeployVersion = append(e.DeployVersion, Str{})
}

package clickhouse

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/faultline-dev/faultline/processors/otlp"
)

// Input columns of our own for the string-heavy parts of telemetry rows.
// ch-go's ColStr copies every string into its buffer on append and again
// into the block on encode, and its ColLowCardinality hashes every value
// when the block is prepared: together about a third of a worker's CPU and
// most of its encode memory. These reference the batch's strings (which
// outlive the insert) and write them once, straight into the block, and
// build LowCardinality dictionaries with a compare against the previous
// value, not a hash lookup, in the usual case of rows that repeat.

// strs is a String column over a batch's strings.
type strs struct {
	src  *otlp.Sources
	refs []otlp.Str
}

func (c *strs) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c *strs) Rows() int              { return len(c.refs) }

// Reset drops the strings: the column may share the batch's slice.
func (c *strs) Reset() { c.src, c.refs = nil, nil }

// AppendArr adds strings without copying their bytes. An empty column
// takes the slice itself (capped, so a later append copies it instead of
// writing into the batch's array).
func (c *strs) AppendArr(src *otlp.Sources, v []otlp.Str) {
	c.src = src
	if len(c.refs) == 0 {
		c.refs = v[:len(v):len(v)]
		return
	}
	c.refs = append(c.refs, v...)
}

func (c *strs) EncodeColumn(b *proto.Buffer) { b.Buf = appendStrs(b.Buf, c.src, c.refs) }

func (c *strs) WriteColumn(w *proto.Writer) {
	w.ChainBuffer(func(b *proto.Buffer) { b.Buf = appendStrs(b.Buf, c.src, c.refs) })
}

// appendStrs writes strings as ClickHouse does: uvarint length, bytes.
func appendStrs(dst []byte, src *otlp.Sources, refs []otlp.Str) []byte {
	n := 0
	for _, r := range refs {
		n += int(r.Len) + binary.MaxVarintLen64
	}
	dst = grow(dst, n)
	var buf []byte
	cur := ^uint32(0)
	for _, r := range refs {
		if r.Len == 0 {
			dst = append(dst, 0)
			continue
		}
		if r.Src != cur { // consecutive strings mostly share a source
			cur, buf = r.Src, src.Source(r.Src)
		}
		if r.Len < 0x80 {
			dst = append(dst, byte(r.Len))
		} else {
			dst = binary.AppendUvarint(dst, uint64(r.Len))
		}
		dst = append(dst, buf[r.Off:r.Off+r.Len]...)
	}
	return dst
}

// grow makes room for n more bytes, by a quarter more than needed: the
// block is one buffer the size of the insert, so doubling would cost up to
// an insert's size again in memory.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		need := len(b) + n
		nb := make([]byte, len(b), need+need/4)
		copy(nb, b)
		b = nb
	}
	return b
}

// lowCard is a LowCardinality(String) column: a dictionary of the distinct
// values in first-seen order and one key per row.
type lowCard struct {
	dict strs
	kv   map[string]uint32 // keys alias the batch: cleared with it
	keys []uint32
	// The previous value and its key: most rows repeat the one before.
	last    otlp.Str
	lastKey uint32
	primed  bool

	width         proto.CardinalityKey
	k8            proto.ColUInt8
	k16           proto.ColUInt16
	k32           proto.ColUInt32
	dictStateSent bool
}

// key returns v's dictionary key, adding v when new.
func (c *lowCard) key(src *otlp.Sources, v otlp.Str) uint32 {
	if c.primed && (v == c.last || bytes.Equal(src.Bytes(v), src.Bytes(c.last))) {
		return c.lastKey
	}
	s := src.String(v)
	k, ok := c.kv[s]
	if !ok {
		if c.kv == nil {
			c.kv = map[string]uint32{}
		}
		k = uint32(len(c.dict.refs))
		c.dict.src = src
		c.dict.refs = append(c.dict.refs, v)
		c.kv[s] = k
	}
	c.last, c.lastKey, c.primed = v, k, true
	return k
}

func (c *lowCard) AppendArr(src *otlp.Sources, vs []otlp.Str) {
	for _, v := range vs {
		c.keys = append(c.keys, c.key(src, v))
	}
}

func (c *lowCard) Type() proto.ColumnType {
	return proto.ColumnTypeLowCardinality.Sub(proto.ColumnTypeString)
}

func (c *lowCard) Rows() int { return len(c.keys) }

func (c *lowCard) Reset() {
	c.dict.src, c.dict.refs = nil, c.dict.refs[:0]
	clear(c.kv)
	c.keys = c.keys[:0]
	c.last, c.primed = otlp.Str{}, false
}

// Prepare picks the narrowest key type for the dictionary's size.
func (c *lowCard) Prepare() error {
	switch n := len(c.dict.refs); {
	case n <= math.MaxUint8+1:
		c.width, c.k8 = proto.KeyUInt8, c.k8[:0]
		for _, k := range c.keys {
			c.k8 = append(c.k8, uint8(k))
		}
	case n <= math.MaxUint16+1:
		c.width, c.k16 = proto.KeyUInt16, c.k16[:0]
		for _, k := range c.keys {
			c.k16 = append(c.k16, uint16(k))
		}
	default:
		c.width, c.k32 = proto.KeyUInt32, c.k32[:0]
		c.k32 = append(c.k32, c.keys...)
	}
	return nil
}

// EncodeState writes the key serialization version: shared dictionaries
// with additional keys, the only one ClickHouse speaks.
func (c *lowCard) EncodeState(b *proto.Buffer) { b.PutInt64(1) }

const (
	lcHasAdditionalKeys    = 1 << 9
	lcNeedUpdateDictionary = 1 << 10
)

func (c *lowCard) encode(b *proto.Buffer) {
	b.PutInt64(lcHasAdditionalKeys | lcNeedUpdateDictionary | int64(c.width))
	b.PutInt64(int64(len(c.dict.refs)))
	c.dict.EncodeColumn(b)
	b.PutInt64(int64(len(c.keys)))
	switch c.width {
	case proto.KeyUInt8:
		c.k8.EncodeColumn(b)
	case proto.KeyUInt16:
		c.k16.EncodeColumn(b)
	default:
		c.k32.EncodeColumn(b)
	}
}

func (c *lowCard) EncodeColumn(b *proto.Buffer) {
	if len(c.keys) > 0 {
		c.encode(b)
	}
}

func (c *lowCard) WriteColumn(w *proto.Writer) {
	if len(c.keys) > 0 {
		w.ChainBuffer(c.encode)
	}
}

// attrMap is a Map(LowCardinality(String), String) column, over either a
// batch's per-row maps (their values and offsets taken as they are) or
// its shared maps (values written row by row at encode time, never
// expanded in memory).
type attrMap struct {
	offsets proto.ColUInt64
	keys    lowCard
	vals    strs
	shared  *otlp.SharedAttrs
	// Keys of the shared map last appended, and per position the key
	// seen last, so repeated maps skip the dictionary lookups.
	spanFrom, spanTo uint32
	spanKeys         []uint32
	pos              []posKey
}

type posKey struct {
	s   otlp.Str
	k   uint32
	set bool
}

func (c *attrMap) Type() proto.ColumnType {
	return proto.ColumnTypeMap.Sub(c.keys.Type(), c.vals.Type())
}

func (c *attrMap) Rows() int { return len(c.offsets) }

func (c *attrMap) Reset() {
	c.offsets = c.offsets[:0]
	c.keys.Reset()
	c.vals.Reset()
	c.shared = nil
	c.spanKeys = c.spanKeys[:0]
	c.spanFrom, c.spanTo = 0, 0
	c.pos = c.pos[:0]
}

func (c *attrMap) Prepare() error              { return c.keys.Prepare() }
func (c *attrMap) EncodeState(b *proto.Buffer) { c.keys.EncodeState(b) }

func (c *attrMap) encodeVals(b *proto.Buffer) {
	if c.shared == nil {
		b.Buf = appendStrs(b.Buf, c.vals.src, c.vals.refs)
		return
	}
	a := c.shared
	for i := range a.From {
		b.Buf = appendStrs(b.Buf, c.vals.src, a.Values[a.From[i]:a.To[i]])
	}
}

func (c *attrMap) EncodeColumn(b *proto.Buffer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.EncodeColumn(b)
	c.keys.EncodeColumn(b)
	c.encodeVals(b)
}

func (c *attrMap) WriteColumn(w *proto.Writer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.WriteColumn(w)
	c.keys.WriteColumn(w)
	w.ChainBuffer(c.encodeVals)
}

// fill appends a batch's per-row maps, with offsets counted from the
// column's rows so far.
func (c *attrMap) fill(src *otlp.Sources, a *otlp.Attrs) {
	start, base := 0, uint64(len(c.keys.keys))
	for _, end := range a.Offsets {
		for j, s := range a.Keys[start:end] {
			if j == len(c.pos) {
				c.pos = append(c.pos, posKey{})
			}
			p := &c.pos[j]
			if !p.set || (p.s != s && !bytes.Equal(src.Bytes(p.s), src.Bytes(s))) {
				p.s, p.k, p.set = s, c.keys.key(src, s), true
			}
			c.keys.keys = append(c.keys.keys, p.k)
		}
		start = int(end)
		c.offsets = append(c.offsets, base+end)
	}
	c.vals.AppendArr(src, a.Values)
}

// fillShared takes rows whose maps repeat: the keys of each stored map are
// looked up once; it is called once per insert.
func (c *attrMap) fillShared(src *otlp.Sources, a *otlp.SharedAttrs) {
	c.shared = a
	c.vals.src = src
	end := uint64(0)
	for i := range a.From {
		from, to := a.From[i], a.To[i]
		if from != c.spanFrom || to != c.spanTo || i == 0 {
			c.spanFrom, c.spanTo = from, to
			c.spanKeys = c.spanKeys[:0]
			for _, s := range a.Keys[from:to] {
				c.spanKeys = append(c.spanKeys, c.keys.key(src, s))
			}
		}
		c.keys.keys = append(c.keys.keys, c.spanKeys...)
		end += uint64(to - from)
		c.offsets = append(c.offsets, end)
	}
}

// arr is an Array column over one of these columns (the Exemplars
// Nested columns).
type arr struct {
	offsets proto.ColUInt64
	data    interface {
		proto.ColInput
		Reset()
	}
}

func (c *arr) Type() proto.ColumnType { return c.data.Type().Array() }
func (c *arr) Rows() int              { return len(c.offsets) }
func (c *arr) Reset()                 { c.offsets = c.offsets[:0]; c.data.Reset() }

func (c *arr) Prepare() error {
	if p, ok := c.data.(proto.Preparable); ok {
		return p.Prepare()
	}
	return nil
}

func (c *arr) EncodeState(b *proto.Buffer) {
	if s, ok := c.data.(proto.StateEncoder); ok {
		s.EncodeState(b)
	}
}

func (c *arr) EncodeColumn(b *proto.Buffer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.EncodeColumn(b)
	c.data.EncodeColumn(b)
}

func (c *arr) WriteColumn(w *proto.Writer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.WriteColumn(w)
	c.data.WriteColumn(w)
}

// appendOffsets appends a batch's array offsets, counted from the
// column's elements so far.
func (c *arr) appendOffsets(offs []uint64) {
	base := uint64(0)
	if n := len(c.offsets); n > 0 {
		base = c.offsets[n-1]
	}
	for _, o := range offs {
		c.offsets = append(c.offsets, base+o)
	}
}

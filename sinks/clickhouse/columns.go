package clickhouse

import (
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

// strs is a String column over the batch's strings.
type strs []string

func (c *strs) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c *strs) Rows() int              { return len(*c) }
func (c *strs) Reset()                 { clear(*c); *c = (*c)[:0] }

// AppendArr appends the strings themselves, not a copy of their bytes.
func (c *strs) AppendArr(v []string) { *c = append(*c, v...) }

func (c *strs) EncodeColumn(b *proto.Buffer) { b.Buf = appendStrs(b.Buf, *c) }

func (c *strs) WriteColumn(w *proto.Writer) {
	w.ChainBuffer(func(b *proto.Buffer) { b.Buf = appendStrs(b.Buf, *c) })
}

// appendStrs writes strings as ClickHouse does: uvarint length, bytes.
func appendStrs(dst []byte, ss []string) []byte {
	n := 0
	for _, s := range ss {
		n += len(s) + binary.MaxVarintLen64
	}
	dst = grow(dst, n)
	for _, s := range ss {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b
}

// lowCard is a LowCardinality(String) column: a dictionary of the distinct
// values in first-seen order and one key per row.
type lowCard struct {
	dict strs
	kv   map[string]uint32
	keys []uint32
	// The previous value and its key: most rows repeat the one before.
	last    string
	lastKey uint32
	primed  bool

	width         proto.CardinalityKey
	k8            proto.ColUInt8
	k16           proto.ColUInt16
	k32           proto.ColUInt32
	dictStateSent bool
}

// key returns v's dictionary key, adding v when new.
func (c *lowCard) key(v string) uint32 {
	if c.primed && v == c.last {
		return c.lastKey
	}
	k, ok := c.kv[v]
	if !ok {
		if c.kv == nil {
			c.kv = map[string]uint32{}
		}
		k = uint32(len(c.dict))
		c.dict = append(c.dict, v)
		c.kv[v] = k
	}
	c.last, c.lastKey, c.primed = v, k, true
	return k
}

func (c *lowCard) Append(v string) { c.keys = append(c.keys, c.key(v)) }

func (c *lowCard) AppendArr(vs []string) {
	for _, v := range vs {
		c.keys = append(c.keys, c.key(v))
	}
}

func (c *lowCard) Type() proto.ColumnType {
	return proto.ColumnTypeLowCardinality.Sub(proto.ColumnTypeString)
}

func (c *lowCard) Rows() int { return len(c.keys) }

func (c *lowCard) Reset() {
	c.dict.Reset()
	clear(c.kv)
	c.keys = c.keys[:0]
	c.last, c.primed = "", false
}

// Prepare picks the narrowest key type for the dictionary's size.
func (c *lowCard) Prepare() error {
	switch n := len(c.dict); {
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
	b.PutInt64(int64(len(c.dict)))
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

// attrMap is a Map(LowCardinality(String), String) column.
type attrMap struct {
	offsets proto.ColUInt64
	keys    lowCard
	vals    strs
	// Keys of the shared map last appended, and per position the key
	// seen last, so repeated maps skip the dictionary lookups.
	spanFrom, spanTo uint32
	spanKeys         []uint32
	pos              []posKey
}

type posKey struct {
	s   string
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
	c.spanKeys = c.spanKeys[:0]
	c.spanFrom, c.spanTo = 0, 0
	clear(c.pos)
	c.pos = c.pos[:0]
}

func (c *attrMap) Prepare() error              { return c.keys.Prepare() }
func (c *attrMap) EncodeState(b *proto.Buffer) { c.keys.EncodeState(b) }

func (c *attrMap) EncodeColumn(b *proto.Buffer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.EncodeColumn(b)
	c.keys.EncodeColumn(b)
	c.vals.EncodeColumn(b)
}

func (c *attrMap) WriteColumn(w *proto.Writer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.WriteColumn(w)
	c.keys.WriteColumn(w)
	c.vals.WriteColumn(w)
}

// fill appends one map per row.
func (c *attrMap) fill(a *otlp.Attrs) {
	start := 0
	for _, end := range a.Offsets {
		for j, s := range a.Keys[start:end] {
			if j == len(c.pos) {
				c.pos = append(c.pos, posKey{})
			}
			p := &c.pos[j]
			if !p.set || p.s != s {
				p.s, p.k, p.set = s, c.keys.key(s), true
			}
			c.keys.keys = append(c.keys.keys, p.k)
		}
		c.vals = append(c.vals, a.Values[start:end]...)
		c.offsets = append(c.offsets, uint64(len(c.keys.keys)))
		start = int(end)
	}
}

// fillShared appends rows whose maps repeat: the keys of each stored map
// are looked up once.
func (c *attrMap) fillShared(a *otlp.SharedAttrs) {
	for i := range a.From {
		from, to := a.From[i], a.To[i]
		if from != c.spanFrom || to != c.spanTo || i == 0 {
			c.spanFrom, c.spanTo = from, to
			c.spanKeys = c.spanKeys[:0]
			for _, s := range a.Keys[from:to] {
				c.spanKeys = append(c.spanKeys, c.keys.key(s))
			}
		}
		c.keys.keys = append(c.keys.keys, c.spanKeys...)
		c.vals = append(c.vals, a.Values[from:to]...)
		c.offsets = append(c.offsets, uint64(len(c.keys.keys)))
	}
}

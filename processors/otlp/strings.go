package otlp

import (
	"bytes"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Str is a string of a batch: bytes [Off, Off+Len) of the batch's source
// Src. Columns hold Strs, not Go strings, so that they hold no pointers:
// the garbage collector scanned every string header of the two 50k-row
// batches a worker keeps (26 per log record) on each cycle, a fifth of the
// worker's CPU, and it skips pointer-free memory entirely. The zero Str is
// the empty string.
type Str struct{ Src, Off, Len uint32 }

// Sources are the memory a batch's strings point into: the payloads it
// decoded, which must stay alive and unmodified while the batch holds
// rows, and the text it rendered or copied (hex ids, numbers, repaired
// UTF-8, strings of pdata objects), kept in chunks reused across batches.
type Sources struct {
	bufs   [][]byte
	chunks [][]byte // text chunks, reused after reset
	cur    int      // chunk being filled
	curSrc uint32   // its source number in this batch; 0: not yet added
}

// Bytes returns s's bytes; they alias the batch's memory.
func (c *Sources) Bytes(s Str) []byte {
	if s.Len == 0 {
		return nil
	}
	return c.bufs[s.Src][s.Off : s.Off+s.Len : s.Off+s.Len]
}

// Source returns source n whole, for encoders that resolve many Strs
// (s is Source(s.Src)[s.Off:s.Off+s.Len]).
func (c *Sources) Source(n uint32) []byte { return c.bufs[n] }

// String returns s as a Go string aliasing the batch's memory: valid until
// the batch is reset. Copy it (strings.Clone) to keep it longer.
func (c *Sources) String(s Str) string {
	b := c.Bytes(s)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Equal tells whether a and b hold the same bytes.
func (c *Sources) Equal(a, b Str) bool {
	return a == b || bytes.Equal(c.Bytes(a), c.Bytes(b))
}

// Copy stores a copy of s in the batch (for strings that are not part of
// a payload, such as the deploy ids enrichment sets).
func (c *Sources) Copy(s string) Str {
	if s == "" {
		return Str{}
	}
	out, ref := c.alloc(len(s))
	copy(out, s)
	return ref
}

// add makes p a source and returns its number. Source 0 is reserved, so
// a source number is never that of the zero Str by accident.
func (c *Sources) add(p []byte) uint32 {
	if len(c.bufs) == 0 {
		c.bufs = append(c.bufs, nil)
	}
	c.bufs = append(c.bufs, p)
	return uint32(len(c.bufs) - 1)
}

func (c *Sources) reset() {
	clear(c.bufs)
	c.bufs = c.bufs[:0]
	for i := range c.chunks[:min(c.cur+1, len(c.chunks))] {
		c.chunks[i] = c.chunks[i][:0]
	}
	c.cur, c.curSrc = 0, 0
}

const textChunk = 64 << 10

// alloc returns n bytes of text and the Str naming them. Chunks are never
// moved or grown, so earlier Strs into them stay valid; a chunk becomes a
// source when first used in a batch.
func (c *Sources) alloc(n int) ([]byte, Str) {
	if len(c.chunks) == 0 {
		c.chunks = append(c.chunks, make([]byte, 0, max(textChunk, n)))
	}
	ch := c.chunks[c.cur]
	if cap(ch)-len(ch) < n {
		c.cur++
		c.curSrc = 0
		if c.cur == len(c.chunks) {
			c.chunks = append(c.chunks, make([]byte, 0, max(textChunk, n)))
		}
		ch = c.chunks[c.cur]
		if cap(ch) < n { // a reused chunk too small for an outsized string
			ch = make([]byte, 0, n)
			c.chunks[c.cur] = ch
		}
	}
	if c.curSrc == 0 {
		c.curSrc = c.add(ch[:cap(ch)])
	}
	off := len(ch)
	c.chunks[c.cur] = ch[:off+n]
	return ch[off : off+n : off+n], Str{Src: c.curSrc, Off: uint32(off), Len: uint32(n)}
}

// hexPairs holds the two lowercase hex digits of every byte value.
var hexPairs = func() (t [512]byte) {
	const digits = "0123456789abcdef"
	for i := range 256 {
		t[2*i], t[2*i+1] = digits[i>>4], digits[i&15]
	}
	return t
}()

// hex stores b as lowercase hex.
func (c *Sources) hex(b []byte) Str {
	out, ref := c.alloc(2 * len(b))
	out = out[:2*len(b)]
	for i, x := range b {
		copy(out[2*i:2*i+2], hexPairs[2*int(x):2*int(x)+2])
	}
	return ref
}

// int stores v in decimal.
func (c *Sources) int(v int64) Str {
	var buf [20]byte
	return c.bytes(strconv.AppendInt(buf[:0], v, 10))
}

// bytes stores a copy of b.
func (c *Sources) bytes(b []byte) Str {
	if len(b) == 0 {
		return Str{}
	}
	out, ref := c.alloc(len(b))
	copy(out, b)
	return ref
}

// clean stores a copy of s with invalid UTF-8 replaced.
func (c *Sources) clean(s string) Str {
	return c.Copy(clean(s))
}

// payload is a request being decoded: a source and where it starts, so
// the walker turns the subslices it finds into Strs.
type payload struct {
	src  uint32
	base uintptr
	end  uintptr
}

func (c *Sources) payload(p []byte) payload {
	if len(p) == 0 {
		return payload{}
	}
	b := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	return payload{src: c.add(p), base: b, end: b + uintptr(len(p))}
}

// str names b, a subslice of the payload, as a Str; invalid UTF-8 is
// copied to text with replacement.
func (c *Sources) str(p *payload, b []byte) Str {
	if len(b) == 0 {
		return Str{}
	}
	if !utf8.Valid(b) {
		return c.Copy(clean(string(b)))
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - p.base
	return Str{Src: p.src, Off: uint32(off), Len: uint32(len(b))}
}

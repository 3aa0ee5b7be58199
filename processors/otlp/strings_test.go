package otlp

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestSources: strings copied into the text arena and strings referencing
// a payload read back intact across chunk boundaries, an outsized string,
// and a reset that reuses the chunks.
func TestSources(t *testing.T) {
	var c Sources
	for round := range 3 {
		p := []byte("0123456789 payload bytes \xff invalid")
		pl := c.payload(p)
		type want struct {
			s   Str
			val string
		}
		var all []want
		all = append(all, want{c.str(&pl, p[0:10]), "0123456789"})
		all = append(all, want{c.str(&pl, p[11:24]), "payload bytes"})
		all = append(all, want{c.str(&pl, p[25:]), "\uFFFD invalid"}) // repaired into text
		all = append(all, want{c.str(&pl, p[:0]), ""})
		// Enough text to fill several 64 KB chunks, one string larger
		// than a chunk, and strings straddling no chunk boundary.
		for i := range 20000 {
			v := fmt.Sprintf("r%d-s%d", round, i)
			if i == 7000 {
				v = strings.Repeat("x", textChunk+10)
			}
			all = append(all, want{c.Copy(v), v})
		}
		all = append(all, want{c.hex([]byte{0x00, 0x7f, 0xff, 0x10}), "007fff10"})
		all = append(all, want{c.int(-1234567890123), "-1234567890123"})
		for i, w := range all {
			if got := c.String(w.s); got != w.val {
				t.Fatalf("round %d, string %d (%+v): %q, want %q", round, i, w.s, got[:min(len(got), 40)], w.val[:min(len(w.val), 40)])
			}
			if !bytes.Equal(c.Bytes(w.s), []byte(w.val)) || !c.Equal(w.s, w.s) {
				t.Fatalf("round %d, string %d: Bytes disagrees with String", round, i)
			}
		}
		if (Str{}) != all[3].s || c.String(Str{}) != "" {
			t.Fatal("the empty string is not the zero Str")
		}
		if !c.Equal(c.Copy("0123456789"), all[0].s) || c.Equal(all[0].s, all[1].s) {
			t.Fatal("Equal compares bytes, not references")
		}
		c.reset()
		if len(c.bufs) != 0 {
			t.Fatalf("reset kept %d sources", len(c.bufs))
		}
	}
	if len(c.chunks) > 8 {
		t.Errorf("%d text chunks after three rounds of ~4 chunks each: reset does not reuse them", len(c.chunks))
	}
}

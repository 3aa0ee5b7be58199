package broker_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

func TestEncodeDecode(t *testing.T) {
	logs := otlptest.LogsRequest("enc", 200)
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	for _, c := range []struct {
		name, enc string
		src       []byte
		want      string // the header value Encode returns
	}{
		{"s2", broker.EncodingS2, logs, broker.EncodingS2},
		{"none", "none", logs, ""},
		{"empty setting", "", logs, ""},
		{"too small to gain", broker.EncodingS2, logs[:40], ""},
		{"incompressible", broker.EncodingS2, random, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf []byte
			data, enc := broker.Encode(&buf, c.src, c.enc)
			if enc != c.want {
				t.Fatalf("encoding %q, want %q", enc, c.want)
			}
			if enc == "" && !bytes.Equal(data, c.src) {
				t.Fatal("a plain payload must be the source bytes")
			}
			if enc != "" && len(data) >= len(c.src) {
				t.Fatalf("compressed to %d bytes from %d", len(data), len(c.src))
			}
			hdr := nats.Header{}
			if enc != "" {
				hdr.Set(broker.HeaderEncoding, enc)
			}
			got, err := broker.Decode(hdr, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.src) {
				t.Fatal("decoded payload differs from the source")
			}
		})
	}
}

// TestEncodeReusesBuffer: the buffer grows once and then serves payloads
// of that size without allocating.
func TestEncodeReusesBuffer(t *testing.T) {
	logs := otlptest.LogsRequest("reuse", 200)
	var buf []byte
	broker.Encode(&buf, logs, broker.EncodingS2)
	if allocs := testing.AllocsPerRun(20, func() { broker.Encode(&buf, logs, broker.EncodingS2) }); allocs != 0 {
		t.Fatalf("%.0f allocations per Encode with a grown buffer, want 0", allocs)
	}
}

// TestDecodeHeaderSpellings: the encoding's name is matched as HTTP
// matches it, without regard to case, and "none" and "identity" say plain.
func TestDecodeHeaderSpellings(t *testing.T) {
	logs := otlptest.LogsRequest("case", 100)
	var buf []byte
	c, _ := broker.Encode(&buf, logs, broker.EncodingS2)
	for _, h := range []struct {
		enc  string
		data []byte
	}{{"S2", c}, {"s2", c}, {"none", logs}, {"Identity", logs}, {"", logs}} {
		got, err := broker.Decode(nats.Header{broker.HeaderEncoding: {h.enc}}, h.data)
		if err != nil || !bytes.Equal(got, logs) {
			t.Errorf("%s %q: %v", broker.HeaderEncoding, h.enc, err)
		}
	}
}

// TestDecodeRefuses: what can never decode says why, and a payload that
// claims to decompress to more than MaxDecodedBytes is refused before
// anything is allocated for it.
func TestDecodeRefuses(t *testing.T) {
	var buf []byte
	good, _ := broker.Encode(&buf, otlptest.LogsRequest("bad", 100), broker.EncodingS2)
	bomb := binary.AppendUvarint(nil, broker.MaxDecodedBytes+1)
	bomb = append(bomb, 0, 0, 0, 0)
	for _, c := range []struct {
		name, enc string
		data      []byte
		want      string
	}{
		{"unknown encoding", "gzip", good, `unsupported Content-Encoding "gzip"`},
		{"truncated", broker.EncodingS2, good[:len(good)/2], "s2 payload"},
		{"not s2", broker.EncodingS2, []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), "s2 payload"},
		{"too large", broker.EncodingS2, bomb, "over the limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := nats.Header{}
			hdr.Set(broker.HeaderEncoding, c.enc)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := broker.Decode(hdr, c.data)
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("allocated %d bytes for a payload that never decodes", n)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

package broker

import (
	"fmt"
	"strings"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
)

// Telemetry payloads on the logs and metrics subjects are OTLP requests as
// their senders wrote them, or, from the gateway, compressed in S2's block
// format (s2.Encode; not its framed stream format). S2 is Snappy's faster
// extension: OTLP requests shrink 3 to 30 times (telemetry repeats its
// names and attributes) for about 0.03 CPU-us per record to compress, so
// JetStream copies, stores, replicates and delivers a fraction of the
// bytes. A message says so the way HTTP does, with a Content-Encoding
// header; without one (the Collector's NATS exporter) the payload is plain.
const (
	HeaderEncoding = "Content-Encoding"
	EncodingS2     = "s2"
)

// MaxDecodedBytes bounds what one message may decompress to, checked
// before anything is allocated, so a small message cannot make a worker
// allocate gigabytes (S2 turns 256 MiB of zeros into 89 bytes). It is the
// largest payload NATS can carry; the gateway's request limit
// (FAULTLINE_GATEWAY_MAX_BODY_BYTES) may not exceed it.
const MaxDecodedBytes = 64 << 20

// Encode compresses src as enc names ("" or "none": not at all) into
// *buf, growing it as needed so the caller can reuse it, and returns the
// bytes to publish and the header value: src itself and "" when
// compression would not make it smaller.
func Encode(buf *[]byte, src []byte, enc string) ([]byte, string) {
	if enc != EncodingS2 || len(src) < 64 {
		return src, ""
	}
	if n := s2.MaxEncodedLen(len(src)); cap(*buf) < n {
		*buf = make([]byte, n)
	}
	c := s2.Encode((*buf)[:cap(*buf)], src)
	if len(c) >= len(src) {
		return src, ""
	}
	return c, EncodingS2
}

// Decode returns a message's payload as its sender wrote it: data itself,
// or a new buffer holding it decompressed. The buffer is the caller's for
// good (a batch's rows point into it), and one that fails to decode is
// garbage like any other, so bad messages leave nothing behind. An unknown
// encoding, corrupt input or a payload that would decompress beyond
// MaxDecodedBytes is an error naming what is wrong; such a message will
// never decode.
func Decode(hdr nats.Header, data []byte) ([]byte, error) {
	enc := hdr.Get(HeaderEncoding)
	switch {
	case enc == "" || strings.EqualFold(enc, "identity") || strings.EqualFold(enc, "none"):
		return data, nil
	case strings.EqualFold(enc, EncodingS2):
		n, err := s2.DecodedLen(data)
		if err != nil {
			return nil, fmt.Errorf("s2 payload of %d bytes: %w", len(data), err)
		}
		if n > MaxDecodedBytes {
			return nil, fmt.Errorf("s2 payload of %d bytes would decompress to %d bytes, over the limit of %d", len(data), n, MaxDecodedBytes)
		}
		out, err := s2.Decode(make([]byte, n), data)
		if err != nil {
			return nil, fmt.Errorf("s2 payload of %d bytes: %w", len(data), err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unsupported %s %q (faultline reads %s, in its block format, or none)", HeaderEncoding, enc, EncodingS2)
	}
}

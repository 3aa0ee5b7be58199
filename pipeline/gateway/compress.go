package gateway

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	// The gRPC compressors the Collector's gRPC client offers (gzip, zstd,
	// snappy), registered under their grpc-encoding names. They are the
	// packages the Collector itself registers, so the wire formats match;
	// the nonclobbering variants leave any compressor registered first in
	// place. grpc-go bounds what they decompress by MaxRecvMsgSize.
	_ "github.com/mostynb/go-grpc-compression/nonclobbering/snappy"
	_ "github.com/mostynb/go-grpc-compression/nonclobbering/zstd"
	_ "google.golang.org/grpc/encoding/gzip"
)

// httpEncodings lists the Content-Encodings the OTLP/HTTP endpoints take:
// what the Collector's HTTP client offers (confighttp).
const httpEncodings = "gzip, zstd, deflate, zlib, snappy, x-snappy-framed, lz4 or none"

// snappyStreamMagic opens every snappy framed stream (the stream
// identifier chunk of the framing format).
var snappyStreamMagic = []byte("\xff\x06\x00\x00sNaPpY")

// decoder returns a reader that decompresses body as enc says, and a
// closer for what it holds. The caller bounds what it reads: the size
// limit applies after decompression, whatever the encoding.
func decoder(enc string, body io.Reader) (io.Reader, func(), error) {
	noop := func() {}
	switch enc {
	case "", "identity":
		return body, noop, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case "zstd":
		zr, err := zstd.NewReader(body,
			zstd.WithDecoderConcurrency(1),
			// A frame may ask for a window of up to this; more is refused
			// rather than allocated (the body limit is the real bound).
			zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	case "deflate", "zlib":
		// HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2); some
		// clients send raw DEFLATE under that name, so both are read.
		br := bufio.NewReader(body)
		head, _ := br.Peek(2)
		if len(head) == 2 && head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return nil, nil, err
			}
			return zr, func() { zr.Close() }, nil
		}
		fr := flate.NewReader(br)
		return fr, func() { fr.Close() }, nil
	case "snappy", "x-snappy-framed":
		// The Collector sends "snappy" as one block by default and as the
		// framed format behind a feature gate (also "x-snappy-framed"):
		// the framed format announces itself with its magic chunk.
		br := bufio.NewReader(body)
		head, _ := br.Peek(len(snappyStreamMagic))
		if bytes.Equal(head, snappyStreamMagic) {
			return snappy.NewReader(br), noop, nil
		}
		if enc == "x-snappy-framed" {
			return nil, nil, fmt.Errorf("not a snappy framed stream")
		}
		return &snappyBlock{src: br}, noop, nil
	case "lz4":
		return lz4.NewReader(body), noop, nil
	}
	return nil, nil, errUnsupportedEncoding
}

var errUnsupportedEncoding = fmt.Errorf("unsupported")

// readBody reads the body, decompressing it as its Content-Encoding says,
// and refuses more than MaxBodyBytes after decompression (a compression
// bomb stops there).
func (g *Gateway) readBody(r *http.Request) (*bytes.Buffer, error) {
	max := g.cfg.MaxBodyBytes
	if r.ContentLength > int64(max) {
		return nil, fail(http.StatusRequestEntityTooLarge, "body of %d bytes exceeds the limit of %d", r.ContentLength, max)
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	src, closeFn, err := decoder(enc, r.Body)
	if err == errUnsupportedEncoding {
		return nil, fail(http.StatusUnsupportedMediaType, "content encoding %q not supported: use %s", enc, httpEncodings)
	}
	if err != nil {
		return nil, fail(http.StatusBadRequest, "%s body: %v", enc, err)
	}
	defer closeFn()
	if sb, ok := src.(*snappyBlock); ok {
		sb.max = max
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(src, int64(max)+1)); err != nil {
		bufPool.Put(buf)
		if err == errTooLarge {
			return nil, fail(http.StatusRequestEntityTooLarge, "body exceeds the limit of %d bytes (after decompression)", max)
		}
		if enc == "" || enc == "identity" {
			return nil, fail(http.StatusBadRequest, "reading body: %v", err)
		}
		return nil, fail(http.StatusBadRequest, "%s body: %v", enc, err)
	}
	if buf.Len() > max {
		bufPool.Put(buf)
		return nil, fail(http.StatusRequestEntityTooLarge, "body exceeds the limit of %d bytes (after decompression)", max)
	}
	return buf, nil
}

var errTooLarge = fmt.Errorf("decompressed size over the limit")

// snappyBlock decodes a body that is one snappy block. The block states
// its decoded length up front, so an oversized one is refused before
// anything is allocated.
type snappyBlock struct {
	src io.Reader
	max int
	out *bytes.Reader
}

func (s *snappyBlock) Read(p []byte) (int, error) {
	if s.out == nil {
		if s.max <= 0 {
			return 0, errTooLarge
		}
		in, err := io.ReadAll(io.LimitReader(s.src, int64(snappy.MaxEncodedLen(s.max))+1))
		if err != nil {
			return 0, err
		}
		if len(in) > snappy.MaxEncodedLen(s.max) {
			return 0, errTooLarge
		}
		n, err := snappy.DecodedLen(in)
		if err != nil {
			return 0, err
		}
		if n > s.max {
			return 0, errTooLarge
		}
		dec, err := snappy.Decode(make([]byte, n), in)
		if err != nil {
			return 0, err
		}
		s.out = bytes.NewReader(dec)
	}
	return s.out.Read(p)
}

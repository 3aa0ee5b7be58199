package gateway_test

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// compressors encode a body as each Content-Encoding the OTLP/HTTP
// endpoints accept, with the libraries the Collector's HTTP client uses.
var compressors = map[string]func([]byte) []byte{
	"gzip": gz,
	"zstd": func(b []byte) []byte {
		w, _ := zstd.NewWriter(nil)
		return w.EncodeAll(b, nil)
	},
	"deflate": func(b []byte) []byte { // zlib, as RFC 9110 says
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.Bytes()
	},
	"deflate-raw": func(b []byte) []byte { // what some clients send as deflate
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.Bytes()
	},
	"snappy": func(b []byte) []byte { return snappy.Encode(nil, b) },
	"snappy-framed": func(b []byte) []byte {
		var buf bytes.Buffer
		w := snappy.NewBufferedWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.Bytes()
	},
	"lz4": func(b []byte) []byte {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		_, _ = w.Write(b)
		_ = w.Close()
		return buf.Bytes()
	},
}

// header is the Content-Encoding a compressor's output is sent with.
func header(name string) string {
	switch name {
	case "deflate-raw":
		return "deflate"
	case "snappy-framed":
		return "snappy"
	}
	return name
}

func TestHTTPCompressions(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, testConfig())
	bomb := make([]byte, 4<<20) // four times the limit once decompressed
	n := 0
	for name, enc := range compressors {
		t.Run(name, func(t *testing.T) {
			body := otlptest.LogsRequest(name, 25)
			code, _, msg := post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", enc: header(name), body: enc(body)})
			if code != 200 {
				t.Fatalf("%s: %d %s", name, code, msg)
			}
			n++
			// The decompressed-size limit holds for every encoding.
			code, _, msg = post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", enc: header(name), body: enc(bomb)})
			if code != 413 || !strings.Contains(msg, "limit") {
				t.Fatalf("%s bomb: %d %s, want 413", name, code, msg)
			}
			// A body that is not what its encoding says is a 400 naming it.
			code, _, msg = post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", enc: header(name), body: []byte("\x00\x01not compressed at all, really")})
			if code != 400 || !strings.Contains(msg, header(name)) {
				t.Fatalf("%s garbage: %d %s, want 400 naming the encoding", name, code, msg)
			}
		})
	}
	// Framed snappy under its own name too.
	code, _, msg := post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", enc: "x-snappy-framed", body: compressors["snappy-framed"](otlptest.LogsRequest("framed", 3))})
	if code != 200 {
		t.Fatalf("x-snappy-framed: %d %s", code, msg)
	}
	n++
	if got := streamMsgs(t, ns.JS, ns.Config.TelemetryStream); got != uint64(n) {
		t.Fatalf("telemetry stream holds %d messages, want %d", got, n)
	}
}

// TestGRPCCompressions sends with each compressor the Collector's gRPC
// client offers. A stock Collector compresses with gzip by default.
func TestGRPCCompressions(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, testConfig())
	conn, err := grpc.NewClient(g.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := plogotlp.NewGRPCClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, name := range []string{"gzip", "zstd", "snappy"} {
		req := plogotlp.NewExportRequestFromLogs(otlptest.Logs(fmt.Sprintf("grpc-%s", name), 10+i))
		if _, err := client.Export(ctx, req, grpc.UseCompressor(name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Past the limit once decompressed: refused, nothing stored.
		big := plogotlp.NewExportRequestFromLogs(otlptest.Logs(strings.Repeat("x", 1<<20), 3))
		_, err := client.Export(ctx, big, grpc.UseCompressor(name))
		if c := grpcstatus.Code(err); c != codes.ResourceExhausted && c != codes.InvalidArgument {
			t.Fatalf("%s oversized: %v, want ResourceExhausted", name, err)
		}
	}
	if got := streamMsgs(t, ns.JS, ns.Config.TelemetryStream); got != 3 {
		t.Fatalf("telemetry stream holds %d messages, want 3", got)
	}
}

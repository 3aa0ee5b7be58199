package gateway_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/processors/events"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

func testConfig() gateway.Config {
	return gateway.Config{
		Listen: "127.0.0.1:0", GRPCListen: "127.0.0.1:0", MaxBodyBytes: 1 << 20, MaxItems: 100,
		PublishTimeout: 2 * time.Second, RetryAfter: 3 * time.Second, ServiceLabel: "service", EnvLabel: "environment",
	}
}

func start(t *testing.T, ns *natstest.Server, c gateway.Config) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New(c, ns.JS, ns.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	return g
}

// payload returns a stored telemetry message's request bytes: the gateway
// publishes them S2-compressed (its default), and says so.
func payload(t *testing.T, m *jetstream.RawStreamMsg) []byte {
	t.Helper()
	if enc := m.Header.Get(broker.HeaderEncoding); enc != broker.EncodingS2 {
		t.Fatalf("message %d: %s %q, want %s", m.Sequence, broker.HeaderEncoding, enc, broker.EncodingS2)
	}
	b, err := broker.Decode(m.Header, m.Data)
	if err != nil {
		t.Fatalf("message %d: %v", m.Sequence, err)
	}
	if len(m.Data) >= len(b) {
		t.Fatalf("message %d: %d bytes compressed from %d", m.Sequence, len(m.Data), len(b))
	}
	return b
}

type req struct {
	path, ctype, enc, token string
	body                    []byte
}

func post(t *testing.T, g *gateway.Gateway, r req) (int, http.Header, string) {
	t.Helper()
	hr, _ := http.NewRequest(http.MethodPost, "http://"+g.Addr()+r.path, bytes.NewReader(r.body))
	if r.ctype != "" {
		hr.Header.Set("Content-Type", r.ctype)
	}
	if r.enc != "" {
		hr.Header.Set("Content-Encoding", r.enc)
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

func TestOTLPAccepted(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, testConfig())
	logs := otlptest.LogsRequest("a", 50)
	logsJSON, _ := plogotlp.NewExportRequestFromLogs(otlptest.Logs("b", 5)).MarshalJSON()
	for _, r := range []req{
		{path: "/v1/logs", ctype: "application/x-protobuf", body: logs},
		{path: "/v1/logs", ctype: "application/x-protobuf", body: logs}, // a retry: deduplicated
		{path: "/v1/logs", ctype: "application/json", body: logsJSON},
		{path: "/v1/logs", ctype: "application/x-protobuf", enc: "gzip", body: gz(otlptest.LogsRequest("c", 7))},
		{path: "/v1/metrics", ctype: "application/x-protobuf", body: otlptest.MetricsRequest()},
		{path: "/v1/metrics", ctype: "application/json; charset=utf-8", body: otlptest.MetricsJSON()},
	} {
		code, hdr, body := post(t, g, r)
		if code != 200 {
			t.Fatalf("%s %s: %d %s", r.path, r.ctype, code, body)
		}
		if want := strings.Split(r.ctype, ";")[0]; hdr.Get("Content-Type") != want {
			t.Errorf("response content type %q, want %q", hdr.Get("Content-Type"), want)
		}
	}
	if n := streamMsgs(t, ns.JS, ns.Config.TelemetryStream); n != 5 {
		t.Fatalf("telemetry stream holds %d messages, want 5 (the retry deduplicated)", n)
	}
	// The bytes are forwarded unchanged under the compression, with their
	// content type.
	s, _ := ns.JS.Stream(context.Background(), ns.Config.TelemetryStream)
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(payload(t, m), logs) || m.Header.Get("Content-Type") != "application/x-protobuf" || m.Subject != "otel_logs" {
		t.Fatalf("stored message differs from the request: subject %s header %v", m.Subject, m.Header)
	}
}

// TestCompressionNone: FAULTLINE_GATEWAY_COMPRESSION=none publishes the
// request's bytes as they came, for consumers of the subjects that read
// OTLP only; a payload too small to gain from compression goes plain
// either way.
func TestCompressionNone(t *testing.T) {
	logs := otlptest.LogsRequest("a", 50)
	tiny := []byte{0x0a, 0x00} // one empty ResourceLogs
	for _, c := range []struct {
		compression string
		body        []byte
		plain       bool
	}{
		{"none", logs, true},
		{"", tiny, true},
		{"s2", logs, false},
	} {
		ns := natstest.Start(t)
		cfg := testConfig()
		cfg.Compression = c.compression
		g := start(t, ns, cfg)
		if code, _, body := post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", body: c.body}); code != 200 {
			t.Fatalf("%q: %d %s", c.compression, code, body)
		}
		s, _ := ns.JS.Stream(context.Background(), ns.Config.TelemetryStream)
		m, err := s.GetMsg(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if !c.plain {
			if !bytes.Equal(payload(t, m), c.body) {
				t.Fatalf("%q: stored payload differs from the request", c.compression)
			}
			continue
		}
		if enc := m.Header.Get(broker.HeaderEncoding); enc != "" || !bytes.Equal(m.Data, c.body) {
			t.Fatalf("%q: stored %d bytes with %s %q; want the request's %d bytes as they came", c.compression, len(m.Data), broker.HeaderEncoding, enc, len(c.body))
		}
	}
	cfg := testConfig()
	cfg.Compression = "gzip"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "FAULTLINE_GATEWAY_COMPRESSION") {
		t.Fatalf("compression gzip: %v, want a FAULTLINE_GATEWAY_COMPRESSION error", err)
	}
}

func TestBadRequests(t *testing.T) {
	ns := natstest.Start(t)
	c := testConfig()
	c.Token = "s3cret"
	g := start(t, ns, c)
	good := otlptest.LogsRequest("x", 20)
	bomb := gz(make([]byte, 4<<20)) // 4 MiB of zeros, about 4 KB compressed
	deploy := `{"service":"checkout","environment":"production","version":"v1","timestamp":"2026-11-01T10:00:00Z"}`
	for _, tc := range []struct {
		name string
		r    req
		code int
		want string
	}{
		{"no token", req{path: "/v1/logs", ctype: "application/x-protobuf", body: good}, 401, "bearer token"},
		{"wrong token", req{path: "/v1/deploys", ctype: "application/json", token: "nope", body: []byte(deploy)}, 401, "bearer token"},
		{"truncated protobuf", req{path: "/v1/logs", ctype: "application/x-protobuf", token: "s3cret", body: good[:len(good)-9]}, 400, "undecodable OTLP protobuf"},
		{"garbage protobuf", req{path: "/v1/metrics", ctype: "application/x-protobuf", token: "s3cret", body: []byte("hello world")}, 400, "undecodable"},
		{"invalid OTLP JSON", req{path: "/v1/logs", ctype: "application/json", token: "s3cret", body: []byte(`{"resourceLogs": 7}`)}, 400, "undecodable OTLP JSON"},
		{"wrong content type", req{path: "/v1/logs", ctype: "text/plain", token: "s3cret", body: good}, 415, "not supported"},
		{"unknown encoding", req{path: "/v1/logs", ctype: "application/x-protobuf", enc: "br", token: "s3cret", body: good}, 415, "encoding"},
		{"bad gzip", req{path: "/v1/logs", ctype: "application/x-protobuf", enc: "gzip", token: "s3cret", body: good}, 400, "gzip"},
		{"oversized", req{path: "/v1/logs", ctype: "application/x-protobuf", token: "s3cret", body: make([]byte, 2<<20)}, 413, "limit"},
		{"gzip bomb", req{path: "/v1/logs", ctype: "application/x-protobuf", enc: "gzip", token: "s3cret", body: bomb}, 413, "after decompression"},
		{"invalid JSON", req{path: "/v1/deploys", ctype: "application/json", token: "s3cret", body: []byte(`{"service":`)}, 400, "invalid JSON"},
		{"missing field", req{path: "/v1/deploys", ctype: "application/json", token: "s3cret", body: []byte(`[` + deploy + `,{"service":"a","environment":"b","timestamp":"2026-11-01T10:00:00Z"}]`)}, 400, "item 1: version: is required"},
		{"wrong type", req{path: "/v1/deploys", ctype: "application/json", token: "s3cret", body: []byte(`{"service":1,"environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z"}`)}, 400, "service: must be a string"},
		{"bad timestamp", req{path: "/v1/deploys", ctype: "application/json", token: "s3cret", body: []byte(`{"service":"s","environment":"p","version":"v","timestamp":"yesterday"}`)}, 400, "RFC 3339"},
		{"bad type", req{path: "/v1/deploys", ctype: "application/json", token: "s3cret", body: []byte(`{"service":"s","environment":"p","version":"v","timestamp":"2026-11-01T10:00:00Z","type":"hotfix"}`)}, 400, "type"},
		{"incident without status", req{path: "/v1/incidents", ctype: "application/json", token: "s3cret", body: []byte(`{"id":"i","service":"s","environment":"p","timestamp":"2026-11-01T10:00:00Z"}`)}, 400, "status"},
		{"alertmanager v3", req{path: "/v1/alertmanager", ctype: "application/json", token: "s3cret", body: []byte(`{"version":"3","alerts":[]}`)}, 400, "version 4"},
		{"cdevent unknown type", req{path: "/v1/cdevents", ctype: "application/json", token: "s3cret", body: []byte(`{"context":{"type":"dev.cdevents.pipelinerun.started.0.2.0","timestamp":"2026-11-01T10:00:00Z"}}`)}, 400, "not a supported CDEvents type"},
		{"too many items", req{path: "/v1/incidents", ctype: "application/json", token: "s3cret", body: []byte("[" + strings.Repeat(`{"id":"i","service":"s","environment":"p","status":"open","timestamp":"2026-11-01T10:00:00Z"},`, 100) + `{"id":"i","service":"s","environment":"p","status":"open","timestamp":"2026-11-01T10:00:00Z"}]`)}, 413, "limit is 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := post(t, g, tc.r)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tc.code, tc.want)
			}
		})
	}
	// GET is not an export.
	resp, err := http.Get("http://" + g.Addr() + "/v1/logs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET = %d, want 405", resp.StatusCode)
	}
	if n := streamMsgs(t, ns.JS, ns.Config.TelemetryStream) + streamMsgs(t, ns.JS, ns.Config.EventsStream); n != 0 {
		t.Fatalf("%d messages stored from bad requests", n)
	}
}

func TestEventEndpoints(t *testing.T) {
	ns := natstest.Start(t)
	g := start(t, ns, testConfig())
	deploys := `[{"service":"checkout","environment":"production","version":"v2","timestamp":"2026-11-01T10:00:00Z","commits":[{"sha":"abc","timestamp":"2026-11-01T09:00:00Z"}]},
		{"id":"d-9","service":"checkout","environment":"production","version":"v1","timestamp":"2026-11-01T11:00:00Z","type":"rollback"}]`
	am := `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"HighErrors","service":"payments","environment":"production","severity":"critical"},
		"annotations":{"summary":"payments 5xx"},"startsAt":"2026-11-01T10:05:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"f00d"}]}`
	cd := `{"context":{"specversion":"0.5.0","id":"e1","source":"/ci","type":"dev.cdevents.service.deployed.0.3.0","timestamp":"2026-11-01T10:00:00Z"},
		"subject":{"id":"svc/search","content":{"environment":{"id":"staging"},"artifactId":"pkg:oci/search@v9.2.0?repository_url=ghcr.io"}}}`
	for _, tc := range []struct {
		path, body string
		accepted   int
	}{
		{"/v1/deploys", deploys, 2},
		{"/v1/deploys", deploys, 2}, // retried: deduplicated by id
		{"/v1/incidents", `{"id":"ops-1","service":"checkout","environment":"production","status":"open","timestamp":"2026-11-01T10:10:00Z","severity":"major"}`, 1},
		{"/v1/alertmanager", am, 1},
		{"/v1/cdevents", cd, 1},
	} {
		code, _, body := post(t, g, req{path: tc.path, ctype: "application/json", body: []byte(tc.body)})
		var got struct{ Accepted int }
		_ = json.Unmarshal([]byte(body), &got)
		if code != 202 || got.Accepted != tc.accepted {
			t.Fatalf("%s: %d %s", tc.path, code, body)
		}
	}
	s, _ := ns.JS.Stream(context.Background(), ns.Config.EventsStream)
	if n := s.CachedInfo().State.Msgs; n != 5 {
		t.Fatalf("events stream holds %d, want 5", n)
	}
	raw, err := s.GetLastMsgForSubject(context.Background(), broker.IncidentsSubject)
	if err != nil {
		t.Fatal(err)
	}
	var inc events.Incident
	if err := json.Unmarshal(raw.Data, &inc); err != nil {
		t.Fatal(err)
	}
	if inc.ID != "am-f00d-1793527500" || inc.Service != "payments" || inc.Source != "alertmanager" || inc.Status != "open" || inc.Severity != "critical" {
		t.Fatalf("alertmanager incident stored as %+v", inc)
	}
	raw, _ = s.GetLastMsgForSubject(context.Background(), broker.DeploysSubject)
	var d events.Deploy
	_ = json.Unmarshal(raw.Data, &d)
	if d.Service != "search" || d.Version != "v9.2.0" || d.Environment != "staging" || !strings.HasPrefix(d.ID, "dep-") {
		t.Fatalf("cdevent deploy stored as %+v", d)
	}
}

func TestGRPC(t *testing.T) {
	ns := natstest.Start(t)
	c := testConfig()
	c.Token = "tok"
	g := start(t, ns, c)
	cc, err := grpc.NewClient(g.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := plogotlp.NewGRPCClient(cc)
	req := plogotlp.NewExportRequestFromLogs(otlptest.Logs("g", 10))
	_, err = client.Export(context.Background(), req)
	if grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("without token: %v, want Unauthenticated", err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer tok")
	if _, err := client.Export(ctx, req); err != nil {
		t.Fatalf("export: %v", err)
	}
	mreq := pmetricotlp.NewExportRequestFromMetrics(otlptest.Metrics())
	if _, err := pmetricotlp.NewGRPCClient(cc).Export(ctx, mreq); err != nil {
		t.Fatalf("export metrics: %v", err)
	}
	if n := streamMsgs(t, ns.JS, ns.Config.TelemetryStream); n != 2 {
		t.Fatalf("telemetry stream holds %d, want 2", n)
	}
	// The request's bytes are published as they came, on the signal's subject.
	s, err := ns.JS.Stream(ctx, ns.Config.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := req.MarshalProto()
	mb, _ := mreq.MarshalProto()
	for seq, want := range map[uint64]struct {
		subject string
		body    []byte
	}{1: {ns.Config.LogsSubject, lb}, 2: {ns.Config.MetricsSubject, mb}} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := payload(t, m); m.Subject != want.subject || !bytes.Equal(got, want.body) || m.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Fatalf("message %d: subject %s, %d bytes, content type %q; want %s, the request's %d bytes",
				seq, m.Subject, len(got), m.Header.Get("Content-Type"), want.subject, len(want.body))
		}
	}
	// Bytes that are not an export request are refused, and never stored.
	for _, bad := range [][]byte{{0xff, 0xff}, {0x0a, 0x05, 0x01}, {0x10, 0x01}} {
		err := cc.Invoke(ctx, "/opentelemetry.proto.collector.logs.v1.LogsService/Export", rawBytes(bad), new(emptyMsg), grpc.ForceCodecV2(bytesCodec{}))
		if grpcstatus.Code(err) != codes.InvalidArgument {
			t.Fatalf("export of % x: %v, want InvalidArgument", bad, err)
		}
	}
	if n := streamMsgs(t, ns.JS, ns.Config.TelemetryStream); n != 2 {
		t.Fatalf("telemetry stream holds %d after bad requests, want 2", n)
	}
}

// rawBytes is a gRPC request sent as it is, through bytesCodec.
type rawBytes []byte

// emptyMsg takes any answer.
type emptyMsg struct{}

// bytesCodec sends rawBytes untouched and ignores answers.
type bytesCodec struct{}

func (bytesCodec) Name() string { return "proto" }

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawBytes))}, nil
}

func (bytesCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

// TestNATSDown: with JetStream gone the gateway answers 503 with
// Retry-After, recovers when it is back, and every request it answered 200
// is in the stream.
func TestNATSDown(t *testing.T) {
	dir := t.TempDir()
	c := natstest.Config(t)
	ns := natstest.StartDir(t, c, dir)
	port := ns.Server.Addr().(interface{ String() string }).String()
	c.Listen = port
	g := start(t, ns, testConfig())
	ok := 0
	send := func(i int) int {
		code, hdr, _ := post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", body: otlptest.LogsRequest("n"+string(rune('a'+i)), 3)})
		if code == 503 && hdr.Get("Retry-After") != "3" {
			t.Fatalf("503 without Retry-After: %v", hdr)
		}
		if code == 200 {
			ok++
		}
		return code
	}
	if send(0) != 200 {
		t.Fatal("first request not accepted")
	}
	ns.Server.Shutdown()
	ns.Server.WaitForShutdown()
	if code := send(1); code != 503 {
		t.Fatalf("with NATS down: %d, want 503", code)
	}
	// Same port, same storage: the gateway's connection reconnects.
	ns2 := natstest.StartDir(t, c, dir)
	deadline := time.Now().Add(20 * time.Second)
	for i := 2; time.Now().Before(deadline); i++ {
		if send(i) == 200 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := streamMsgs(t, ns2.JS, c.TelemetryStream); int(n) != ok || ok < 2 {
		t.Fatalf("stream holds %d messages, %d requests were answered 200", n, ok)
	}
}

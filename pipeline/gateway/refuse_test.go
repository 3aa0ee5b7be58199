package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// refused reads faultline_gateway_refused_total{reason} from the process's
// metrics.
func refused(t *testing.T, reason string) int {
	t.Helper()
	var buf bytes.Buffer
	metrics.WritePrometheus(&buf, false)
	m := regexp.MustCompile(`(?m)^faultline_gateway_refused_total\{reason="` + reason + `"\} (\d+)$`).FindSubmatch(buf.Bytes())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestRefusals: against a server whose account may store 4 MiB, so the
// telemetry stream is bounded to 2 MiB, the gateway answers a full stream
// with 429 and Retry-After over HTTP and RESOURCE_EXHAUSTED with RetryInfo
// over gRPC, keeps taking events meanwhile, and answers 503 with
// Retry-After on the event endpoints once the account's storage is full.
func TestRefusals(t *testing.T) {
	ns := natstest.StartLimited(t, "4MB")
	if ns.Config.TelemetryMaxBytes != 2<<20 {
		t.Fatalf("telemetry bound %d, want 2 MiB", ns.Config.TelemetryMaxBytes)
	}
	// Plain payloads, so the requests fill the stream at a known pace.
	cfg := testConfig()
	cfg.Compression = "none"
	g := start(t, ns, cfg)
	streamFull, accountFull := refused(t, "stream_full"), refused(t, "account_full")

	accepted := 0
	for i := 0; ; i++ {
		code, hdr, body := post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", body: otlptest.LogsRequest("full-"+strconv.Itoa(i), 200)})
		if code == http.StatusOK {
			if accepted++; accepted > 200 {
				t.Fatal("a stream bounded to 2 MiB keeps accepting")
			}
			continue
		}
		if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "3" || !strings.Contains(body, "stream_full") {
			t.Fatalf("request %d to the full stream: %d, Retry-After %q, %q; want 429, 3", i, code, hdr.Get("Retry-After"), body)
		}
		break
	}
	if n := streamMsgs(t, ns.JS, ns.Config.TelemetryStream); int(n) != accepted {
		t.Fatalf("stream holds %d messages, %d requests were accepted", n, accepted)
	}
	js, err := plogotlp.NewExportRequestFromLogs(otlptest.Logs("json-full", 200)).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := post(t, g, req{path: "/v1/logs", ctype: "application/json", body: js})
	if code != http.StatusTooManyRequests || !strings.Contains(body, `"code":8`) {
		t.Fatalf("OTLP/JSON to the full stream: %d %s, want 429 with code 8 (RESOURCE_EXHAUSTED)", code, body)
	}

	cc, err := grpc.NewClient(g.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = plogotlp.NewGRPCClient(cc).Export(context.Background(), plogotlp.NewExportRequestFromLogs(otlptest.Logs("grpc-full", 200)))
	checkRetryInfo(t, err, codes.ResourceExhausted, 3*time.Second)

	// A full telemetry stream leaves the events alone.
	deploy := []byte(`{"service":"checkout","environment":"production","version":"v1","timestamp":"2026-11-01T10:00:00Z","status":"succeeded"}`)
	if code, _, body := post(t, g, req{path: "/v1/deploys", ctype: "application/json", body: deploy}); code != http.StatusAccepted {
		t.Fatalf("deploy while telemetry is full: %d %s", code, body)
	}

	// Fill the account's storage through another stream.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, size := range []int{100 << 10, 1 << 10, 32} {
		for i := 0; ; i++ {
			if _, err := ns.JS.Publish(ctx, "faultline.dlq.test", make([]byte, size)); err != nil {
				break
			}
			if i > 100 {
				t.Fatalf("the account keeps storing messages of %d bytes", size)
			}
		}
	}
	deploy = bytes.Replace(deploy, []byte("v1"), []byte("v2"), 1)
	code, hdr, body := post(t, g, req{path: "/v1/deploys", ctype: "application/json", body: deploy})
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "3" || !strings.Contains(body, "account_full") {
		t.Fatalf("deploy with the account full: %d, Retry-After %q, %s; want 503, 3", code, hdr.Get("Retry-After"), body)
	}
	code, _, body = post(t, g, req{path: "/v1/logs", ctype: "application/x-protobuf", body: otlptest.LogsRequest("account-full", 10)})
	if code != http.StatusTooManyRequests || !strings.Contains(body, "account_full") {
		t.Fatalf("logs with the account full: %d %q, want 429", code, body)
	}

	if d := refused(t, "stream_full") - streamFull; d != 3 {
		t.Errorf("refused_total{reason=stream_full} rose by %d, want 3", d)
	}
	if d := refused(t, "account_full") - accountFull; d != 2 {
		t.Errorf("refused_total{reason=account_full} rose by %d, want 2", d)
	}
}

// checkRetryInfo checks that err is a gRPC status of code c carrying
// RetryInfo with delay d.
func checkRetryInfo(t *testing.T, err error, c codes.Code, d time.Duration) {
	t.Helper()
	st := grpcstatus.Convert(err)
	if st.Code() != c {
		t.Fatalf("gRPC: %v, want %s", err, c)
	}
	for _, det := range st.Details() {
		if ri, ok := det.(*errdetails.RetryInfo); ok {
			if got := ri.GetRetryDelay().AsDuration(); got != d {
				t.Fatalf("RetryInfo delay %s, want %s", got, d)
			}
			return
		}
	}
	t.Fatalf("gRPC %s without RetryInfo: %s", c, fmt.Sprint(st.Details()))
}

// Package gateway is faultline's front door: OTLP/HTTP and OTLP/gRPC for
// logs and metrics, and JSON endpoints for deploy and incident events
// (native, Alertmanager, CDEvents). It validates each request, publishes it
// to JetStream and answers only after JetStream has persisted it, with the
// status codes OpenTelemetry Collectors act on: 400 for data that will never
// be accepted (not retried), 413 over the size limit, 429/503 with
// Retry-After when JetStream cannot take it now (retried).
//
// OTLP payloads are forwarded as received (decompressed), not re-encoded:
// the gateway walks protobuf structure without building objects, and the
// workers decode. A retried request carries the same Nats-Msg-Id (a hash of
// its bytes), so JetStream drops the duplicate within its window.
package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/faultline-dev/faultline/pipeline/broker"
)

// Gateway serves the HTTP and gRPC listeners.
type Gateway struct {
	cfg  Config
	js   jetstream.JetStream
	nats broker.Config
	log  *slog.Logger
	m    *gwMetrics

	hooks *vendorHooks // CI/CD webhook settings and memory

	http   *http.Server
	httpLn net.Listener
	grpc   *grpc.Server
	grpcLn net.Listener
}

// New prepares a gateway publishing to js; Start binds the listeners.
func New(c Config, js jetstream.JetStream, n broker.Config, log *slog.Logger) (*Gateway, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: c, js: js, nats: n, log: log, m: newMetrics()}
	var err error
	if g.hooks, err = newVendorHooks(c, js, n); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", g.endpoint("logs", g.otlp(n.LogsSubject, kindLogs)))
	mux.Handle("/v1/metrics", g.endpoint("metrics", g.otlp(n.MetricsSubject, kindMetrics)))
	mux.Handle("/v1/deploys", g.endpoint("deploys", g.deploys))
	mux.Handle("/v1/incidents", g.endpoint("incidents", g.incidents))
	mux.Handle("/v1/alertmanager", g.endpoint("alertmanager", g.alertmanager))
	mux.Handle("/v1/cdevents", g.endpoint("cdevents", g.cdevents))
	mux.Handle("/v1/pagerduty", g.endpoint("pagerduty", g.pagerduty))
	mux.Handle("/v1/grafana", g.endpointAuth("grafana", g.grafana, g.grafanaAuthorized))
	// A CI/CD endpoint whose secret is set checks the vendor's own
	// signature or token instead of the bearer token.
	mux.Handle("/v1/github", g.endpointAuth("github", g.github, g.vendorAuth(c.GitHubSecret)))
	mux.Handle("/v1/gitlab", g.endpointAuth("gitlab", g.gitlab, g.vendorAuth(c.GitLabToken)))
	mux.Handle("/v1/argocd", g.endpointAuth("argocd", g.argocd, g.vendorAuth(c.ArgoCDToken)))
	mux.Handle("/v1/flux", g.endpointAuth("flux", g.flux, g.vendorAuth(c.FluxSecret)))
	g.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	if c.GRPCListen != "" {
		g.grpc = newGRPC(g)
	}
	return g, nil
}

// Start binds both listeners and serves in the background.
func (g *Gateway) Start() error {
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway listen %s: %w", g.cfg.Listen, err)
	}
	g.httpLn = ln
	go func() {
		if err := g.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("gateway http", "err", err)
		}
	}()
	if g.grpc != nil {
		gl, err := net.Listen("tcp", g.cfg.GRPCListen)
		if err != nil {
			_ = g.http.Close()
			return fmt.Errorf("gateway grpc listen %s: %w", g.cfg.GRPCListen, err)
		}
		g.grpcLn = gl
		go func() {
			if err := g.grpc.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				g.log.Error("gateway grpc", "err", err)
			}
		}()
	}
	return nil
}

// Addr is the HTTP listener's address.
func (g *Gateway) Addr() string { return g.httpLn.Addr().String() }

// GRPCAddr is the gRPC listener's address ("" when disabled).
func (g *Gateway) GRPCAddr() string {
	if g.grpcLn == nil {
		return ""
	}
	return g.grpcLn.Addr().String()
}

// Shutdown stops accepting requests and waits for those in flight.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if g.grpc != nil {
		done := make(chan struct{})
		go func() { g.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			g.grpc.Stop()
		}
	}
	return g.http.Shutdown(ctx)
}

// status is an HTTP answer with a message for the caller.
type status struct {
	code  int
	msg   string
	field string
}

func (s *status) Error() string { return s.msg }

func fail(code int, format string, a ...any) *status {
	return &status{code: code, msg: fmt.Sprintf(format, a...)}
}

// handler handles one endpoint's request and returns the success status
// and body, or a *status error.
type handler func(w http.ResponseWriter, r *http.Request, body []byte) error

// endpoint wraps a handler with what every endpoint needs: method, auth,
// body reading with decompression and size limit, metrics and errors.
func (g *Gateway) endpoint(name string, h handler) http.Handler {
	return g.endpointAuth(name, h, g.authorized)
}

// endpointAuth is endpoint with its own check of the Authorization header,
// for senders that authenticate their own way.
func (g *Gateway) endpointAuth(name string, h handler, authorized func(header string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		err := g.serve(rec, r, h, authorized)
		code := rec.code
		if err != nil {
			var st *status
			if !errors.As(err, &st) {
				st = &status{code: http.StatusInternalServerError, msg: err.Error()}
			}
			code = st.code
			g.writeError(w, r, st)
		}
		g.m.request(name, code)
		g.log.Debug("request", "endpoint", name, "code", code, "bytes", r.ContentLength, "elapsed", time.Since(start))
	})
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, h handler, authorized func(string) bool) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return fail(http.StatusMethodNotAllowed, "method %s not allowed: use POST", r.Method)
	}
	if !authorized(r.Header.Get("Authorization")) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="faultline"`)
		return fail(http.StatusUnauthorized, "missing or wrong bearer token")
	}
	buf, err := g.readBody(r)
	if err != nil {
		return err
	}
	defer bufPool.Put(buf)
	return h(w, r, buf.Bytes())
}

func (g *Gateway) authorized(header string) bool {
	if g.cfg.Token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(header), []byte("Bearer "+g.cfg.Token)) == 1
}

// bufPool recycles request bodies: a body is only needed until JetStream
// has acked it (the client copies it into its write buffer).
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// contentType returns the media type without parameters.
func contentType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

// publishTelemetry publishes an OTLP request compressed as configured
// (broker.Encode). Its message id is taken from the bytes as received, so
// a retried request is a duplicate whatever the compression.
func (g *Gateway) publishTelemetry(ctx context.Context, subject, ctype string, body []byte) error {
	id := msgID(subject, body)
	buf := encodeBuffers.Get().(*[]byte)
	defer encodeBuffers.Put(buf)
	data, enc := broker.Encode(buf, body, g.cfg.compression())
	if err := g.publish(ctx, subject, id, ctype, enc, data); err != nil {
		return err
	}
	g.m.publishedBytes.Add(len(data))
	return nil
}

// encodeBuffers recycles compressed payloads: like request bodies, one is
// needed only until JetStream has acked it.
var encodeBuffers = sync.Pool{New: func() any { return new([]byte) }}

// publish stores one message and waits for JetStream's ack. A failure
// becomes the status refusal decides.
func (g *Gateway) publish(ctx context.Context, subject, msgID, ctype, enc string, data []byte) error {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, msgID)
	if ctype != "" {
		m.Header.Set("Content-Type", ctype)
	}
	if enc != "" {
		m.Header.Set(broker.HeaderEncoding, enc)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	_, err := g.js.PublishMsg(ctx, m)
	g.m.publishSeconds.UpdateDuration(start)
	if err == nil {
		return nil
	}
	return g.refusal(subject, err)
}

// msgID identifies a payload for JetStream's duplicate window. xxhash keeps
// it cheap (a few GB/s); the length and subject make a collision within the
// two-minute window implausible.
func msgID(subject string, data []byte) string {
	return subject + "-" + strconv.FormatUint(xxhash.Sum64(data), 16) + "-" + strconv.Itoa(len(data))
}

// writeError answers an OTLP endpoint with a google.rpc.Status in the
// request's encoding and the event endpoints with {"error","field"}.
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, st *status) {
	if retryable(st.code) {
		w.Header().Set("Retry-After", strconv.Itoa(int(g.cfg.RetryAfter/time.Second)))
	}
	if isOTLP(r.URL.Path) && contentType(r) == ctProtobuf {
		w.Header().Set("Content-Type", ctProtobuf)
		w.WriteHeader(st.code)
		_, _ = w.Write(rpcStatus(grpcCode(st.code), st.msg))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st.code)
	body := map[string]any{"error": st.msg}
	if st.field != "" {
		body["field"] = st.field
	}
	if isOTLP(r.URL.Path) {
		body = map[string]any{"code": grpcCode(st.code), "message": st.msg}
	}
	_ = json.NewEncoder(w).Encode(body)
}

func isOTLP(path string) bool { return path == "/v1/logs" || path == "/v1/metrics" }

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// recorder remembers the status a handler wrote, for metrics.
type recorder struct {
	http.ResponseWriter
	code int
}

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

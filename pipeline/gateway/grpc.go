package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	// The proto codec, which rawCodec hands anything but OTLP export
	// requests and responses to.
	_ "google.golang.org/grpc/encoding/proto"
)

// The OTLP/gRPC services, as opentelemetry-proto names them.
const (
	logsService    = "opentelemetry.proto.collector.logs.v1.LogsService"
	metricsService = "opentelemetry.proto.collector.metrics.v1.MetricsService"
)

// newGRPC serves OTLP/gRPC the way the HTTP endpoints serve OTLP/HTTP:
// the request's protobuf bytes are checked two levels deep and published
// as they came. Registering pdata's services instead would decode every
// request into objects and encode it again, which cost about 2 CPU-us per
// log record, ten times the rest of the gateway's work.
func newGRPC(g *Gateway) *grpc.Server {
	s := grpc.NewServer(
		grpc.MaxRecvMsgSize(g.cfg.MaxBodyBytes),
		// The Collector's OTLP receiver reads 512 KiB at a time too: a
		// request of 1000 logs is then a few reads, not dozens.
		grpc.ReadBufferSize(512<<10),
		// Requests run on long-lived workers rather than a goroutine
		// each: a fresh goroutine grew its stack to the depth of a
		// JetStream publish on every request (newstack and copystack were
		// a tenth of the gateway's CPU). When all are busy, waiting for
		// acks, gRPC starts a goroutine for the request as before.
		grpc.NumStreamWorkers(uint32(16*runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if g.cfg.Token != "" {
				md, _ := metadata.FromIncomingContext(ctx)
				ok := false
				for _, v := range md.Get("authorization") {
					if subtle.ConstantTimeCompare([]byte(v), []byte("Bearer "+g.cfg.Token)) == 1 {
						ok = true
					}
				}
				if !ok {
					g.m.request("grpc", http.StatusUnauthorized)
					return nil, grpcstatus.Error(codes.Unauthenticated, "missing or wrong bearer token")
				}
			}
			return h(ctx, req)
		}),
	)
	s.RegisterService(exportService(logsService, "opentelemetry/proto/collector/logs/v1/logs_service.proto", func(ctx context.Context, b []byte) error {
		return g.grpcPublish(ctx, "grpc_logs", g.nats.LogsSubject, b)
	}), g)
	s.RegisterService(exportService(metricsService, "opentelemetry/proto/collector/metrics/v1/metrics_service.proto", func(ctx context.Context, b []byte) error {
		return g.grpcPublish(ctx, "grpc_metrics", g.nats.MetricsSubject, b)
	}), g)
	return s
}

// rawRequest is an OTLP export request as it came off the wire, gathered
// into one buffer from requestBuffers: the handler frees it once JetStream
// has acked (nats.go copies a message into its write buffer), so requests
// of hundreds of kilobytes are neither allocated nor cleared each time.
type rawRequest struct{ buf mem.Buffer }

// requestBuffers recycles request buffers without zeroing them: each is
// overwritten whole by the request's bytes. (gRPC's default pool clears a
// buffer's whole capacity on every Get: a fifth of the gateway's CPU.)
var requestBuffers = &unzeroedPool{}

type unzeroedPool struct{ p sync.Pool }

func (u *unzeroedPool) Get(n int) *[]byte {
	if b, ok := u.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

func (u *unzeroedPool) Put(b *[]byte) { u.p.Put(b) }

// exportResponse is an empty Export*ServiceResponse: full success.
type exportResponse struct{}

// rawCodec keeps export requests as bytes and writes the empty response;
// anything else goes to the proto codec.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if _, ok := v.(exportResponse); ok {
		return nil, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.buf = data.MaterializeToBuffer(requestBuffers)
		return nil
	}
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

// exportService is an OTLP service with its one method, Export, handing
// the request bytes to publish.
func exportService(name, file string, publish func(context.Context, []byte) error) *grpc.ServiceDesc {
	handle := func(ctx context.Context, req any) (any, error) {
		r := req.(*rawRequest)
		if r.buf == nil {
			return nil, grpcstatus.Error(codes.Internal, "no request body")
		}
		defer r.buf.Free()
		if err := publish(ctx, r.buf.ReadOnlyData()); err != nil {
			return nil, err
		}
		return exportResponse{}, nil
	}
	return &grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				req := &rawRequest{}
				if err := dec(req); err != nil {
					return nil, err
				}
				if ic == nil {
					return handle(ctx, req)
				}
				return ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + name + "/Export"}, handle)
			},
		}},
		Metadata: file,
	}
}

func (g *Gateway) grpcPublish(ctx context.Context, endpoint, subject string, b []byte) error {
	if len(b) > g.cfg.MaxBodyBytes {
		g.m.request(endpoint, http.StatusRequestEntityTooLarge)
		return grpcstatus.Errorf(codes.InvalidArgument, "request of %d bytes exceeds the limit of %d", len(b), g.cfg.MaxBodyBytes)
	}
	if err := validateProto(b); err != nil {
		g.m.request(endpoint, http.StatusBadRequest)
		return grpcstatus.Error(codes.InvalidArgument, fmt.Sprintf("undecodable OTLP protobuf: %v", err))
	}
	err := g.publishTelemetry(ctx, subject, ctProtobuf, b)
	if err != nil {
		var st *status
		code := http.StatusServiceUnavailable
		if errors.As(err, &st) {
			code = st.code
		}
		g.m.request(endpoint, code)
		return grpcError(code, err.Error(), g.cfg.RetryAfter)
	}
	g.m.bytes.Add(len(b))
	g.m.request(endpoint, http.StatusOK)
	return nil
}

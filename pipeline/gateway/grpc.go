package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

// newGRPC serves OTLP/gRPC. pdata's service registrations hand us decoded
// requests, so this path re-encodes before publishing: the Collector's
// otlphttp exporter is the cheaper way in.
func newGRPC(g *Gateway) *grpc.Server {
	s := grpc.NewServer(
		grpc.MaxRecvMsgSize(g.cfg.MaxBodyBytes),
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
	plogotlp.RegisterGRPCServer(s, &grpcLogs{g: g})
	pmetricotlp.RegisterGRPCServer(s, &grpcMetrics{g: g})
	return s
}

type grpcLogs struct {
	plogotlp.UnimplementedGRPCServer
	g *Gateway
}

func (s *grpcLogs) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	b, err := req.MarshalProto()
	if err != nil {
		return plogotlp.NewExportResponse(), grpcstatus.Errorf(codes.InvalidArgument, "encode: %v", err)
	}
	return plogotlp.NewExportResponse(), s.g.grpcPublish(ctx, "grpc_logs", s.g.nats.LogsSubject, b)
}

type grpcMetrics struct {
	pmetricotlp.UnimplementedGRPCServer
	g *Gateway
}

func (s *grpcMetrics) Export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	b, err := req.MarshalProto()
	if err != nil {
		return pmetricotlp.NewExportResponse(), grpcstatus.Errorf(codes.InvalidArgument, "encode: %v", err)
	}
	return pmetricotlp.NewExportResponse(), s.g.grpcPublish(ctx, "grpc_metrics", s.g.nats.MetricsSubject, b)
}

func (g *Gateway) grpcPublish(ctx context.Context, endpoint, subject string, b []byte) error {
	if len(b) > g.cfg.MaxBodyBytes {
		g.m.request(endpoint, http.StatusRequestEntityTooLarge)
		return grpcstatus.Errorf(codes.InvalidArgument, "request of %d bytes exceeds the limit of %d", len(b), g.cfg.MaxBodyBytes)
	}
	err := g.publish(ctx, subject, msgID(subject, b), ctProtobuf, b)
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

package gateway

import (
	"net/http"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	ctProtobuf = "application/x-protobuf"
	ctJSON     = "application/json"
)

type otlpKind uint8

const (
	kindLogs otlpKind = iota
	kindMetrics
)

// otlp handles POST /v1/logs and /v1/metrics as the OTLP/HTTP spec says.
func (g *Gateway) otlp(subject string, kind otlpKind) handler {
	return func(w http.ResponseWriter, r *http.Request, body []byte) error {
		ct := contentType(r)
		switch ct {
		case ctProtobuf:
			if err := validateProto(body); err != nil {
				return fail(http.StatusBadRequest, "undecodable OTLP protobuf: %v", err)
			}
		case ctJSON:
			if err := validateJSON(kind, body); err != nil {
				return fail(http.StatusBadRequest, "undecodable OTLP JSON: %v", err)
			}
		default:
			return fail(http.StatusUnsupportedMediaType, "content type %q not supported: use application/x-protobuf or application/json", r.Header.Get("Content-Type"))
		}
		if err := g.publishTelemetry(r.Context(), subject, ct, body); err != nil {
			return err
		}
		g.m.bytes.Add(len(body))
		// An empty ExportLogs/MetricsServiceResponse: full success.
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		if ct == ctJSON {
			_, _ = w.Write([]byte("{}"))
		}
		return nil
	}
}

// validateJSON decodes an OTLP/JSON request with pdata: JSON is the rare,
// slow path, and nothing short of decoding tells a valid one.
func validateJSON(kind otlpKind, body []byte) error {
	if kind == kindLogs {
		return plogotlp.NewExportRequest().UnmarshalJSON(body)
	}
	return pmetricotlp.NewExportRequest().UnmarshalJSON(body)
}

// grpcCode maps an HTTP status to the gRPC code the OTLP spec pairs it with.
func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusRequestEntityTooLarge:
		return codes.InvalidArgument
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Internal
}

// rpcStatus encodes a google.rpc.Status {code, message}.
func rpcStatus(c codes.Code, msg string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(c))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, msg)
}

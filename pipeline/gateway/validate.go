package gateway

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// validateProto checks that an OTLP export request is well-formed protobuf
// two levels deep (the request and each ResourceLogs/ResourceMetrics
// inside it) without building any object: truncated or garbage bodies are
// rejected at the gateway, and the bytes are forwarded untouched. Deeper
// damage is caught by the worker's full decode, which dead-letters it.
func validateProto(b []byte) error {
	return walk(b, 2)
}

func walk(b []byte, depth int) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad field tag: %w", protowire.ParseError(n))
		}
		if num > 1<<16 {
			return fmt.Errorf("field number %d out of range", num)
		}
		b = b[n:]
		if depth == 2 && (num != 1 || typ != protowire.BytesType) {
			return fmt.Errorf("field %d wire type %d: not an OTLP export request", num, typ)
		}
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			if depth > 1 {
				if err := walk(v, depth-1); err != nil {
					return fmt.Errorf("field %d: %w", num, err)
				}
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

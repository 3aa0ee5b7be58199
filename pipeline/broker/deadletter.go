package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers a dead letter carries besides the original payload and headers.
const (
	HeaderReason    = "Faultline-Reason"     // why it was dead-lettered, for a person
	HeaderStream    = "Faultline-Stream"     // stream the original came from
	HeaderStreamSeq = "Faultline-Stream-Seq" // its sequence there
	HeaderSubject   = "Faultline-Subject"    // its subject
	HeaderTarget    = "Faultline-Target"     // the webhook target a delivery failed for
)

// maxReasonLen bounds the reason header; a decode error can quote input.
const maxReasonLen = 1024

// DeadLetter stores a message that cannot be processed on
// faultline.dlq.<kind> with the original payload and headers and the reason,
// and waits for JetStream to persist it. The message id makes a repeated
// dead-lettering of the same original (after a crash) a no-op.
func DeadLetter(ctx context.Context, js jetstream.JetStream, kind, reason, stream string, seq uint64, subject string, hdr nats.Header, data []byte) error {
	m := nats.NewMsg(DeadLetterPrefix + "." + kind)
	for k, vs := range hdr {
		if k == nats.MsgIdHdr || k == "Nats-Expected-Stream" || k == "Nats-Expected-Last-Sequence" {
			continue
		}
		m.Header[k] = append([]string(nil), vs...)
	}
	// Header values cannot hold line breaks.
	reason = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen] + "..."
	}
	m.Header.Set(HeaderReason, reason)
	m.Header.Set(HeaderStream, stream)
	m.Header.Set(HeaderStreamSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderSubject, subject)
	id := "dlq/" + kind + "/" + stream + "/" + strconv.FormatUint(seq, 10)
	if t := hdr.Get(HeaderTarget); t != "" {
		id += "/" + t // one original may fail for several targets
	}
	m.Header.Set(nats.MsgIdHdr, id)
	m.Data = data
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("dead-letter %s seq %d: %w", stream, seq, err)
	}
	return nil
}

package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks (standardwebhooks.com) headers: receivers verify them
// with any of that project's libraries, or with Verify.
const (
	HeaderID        = "webhook-id"        // the event id: the same fact always has the same id
	HeaderTimestamp = "webhook-timestamp" // Unix seconds of the attempt
	HeaderSignature = "webhook-signature" // "v1,<base64 HMAC-SHA256 of id.timestamp.body>", space-separated when several
)

// Tolerance is how far a delivery's timestamp may be from the receiver's
// clock, either way, before Verify refuses it as a replay.
const Tolerance = 5 * time.Minute

// secretPrefix marks a secret given as base64 bytes, as Standard Webhooks
// senders hand them out.
const secretPrefix = "whsec_"

// Errors of Verify.
var (
	ErrNoSignature = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrTimestamp   = errors.New("webhook: timestamp outside the tolerance")
	ErrSignature   = errors.New("webhook: no matching signature")
)

// signingKey is the HMAC key of a secret: "whsec_<base64>" is decoded, as
// the Standard Webhooks specification says; any other secret is used as
// its raw bytes, so secrets from before Standard Webhooks keep working.
func signingKey(secret string) ([]byte, error) {
	if b64, ok := strings.CutPrefix(secret, secretPrefix); ok {
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("secret %s...: not base64 after %s: %w", secretPrefix, secretPrefix, err)
		}
		if len(key) == 0 {
			return nil, fmt.Errorf("secret %s: empty key", secretPrefix)
		}
		return key, nil
	}
	return []byte(secret), nil
}

// Sign returns the webhook-signature value of a delivery: "v1," and the
// standard base64 HMAC-SHA256 of "<id>.<unix seconds>.<body>".
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := signingKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, ts.Unix(), body)), nil
}

func mac(key []byte, id string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery's Standard Webhooks headers against its raw
// body: the timestamp within Tolerance of now, and one of the
// space-separated v1 signatures made with secret (several appear while a
// secret is rotated). Receivers can copy it; it needs only the standard
// library.
func Verify(secret string, h http.Header, body []byte, now time.Time) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrNoSignature
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrTimestamp, tsText)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: %s off", ErrTimestamp, d.Round(time.Second))
	}
	key, err := signingKey(secret)
	if err != nil {
		return err
	}
	want := mac(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		b64, ok := strings.CutPrefix(s, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}

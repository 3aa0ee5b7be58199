package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// The Standard Webhooks specification's published example: this secret,
// message id, timestamp and payload sign to this value in every reference
// library.
const (
	specSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp = 1614265330
	specPayload   = `{"test": 2432232314}`
	specSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func specHeaders(sig string, ts int64) http.Header {
	h := http.Header{}
	h.Set(HeaderID, specMsgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, sig)
	return h
}

func TestStandardWebhooksSpecVector(t *testing.T) {
	sig, err := Sign(specSecret, specMsgID, time.Unix(specTimestamp, 0), []byte(specPayload))
	if err != nil || sig != specSignature {
		t.Fatalf("Sign = %q, %v; the specification says %q", sig, err, specSignature)
	}
	at := time.Unix(specTimestamp, 0)
	if err := Verify(specSecret, specHeaders(specSignature, specTimestamp), []byte(specPayload), at.Add(time.Minute)); err != nil {
		t.Fatalf("Verify of the specification's example: %v", err)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(specPayload)
	now := time.Unix(specTimestamp, 0)
	other, _ := Sign("whsec_c2VjcmV0", specMsgID, now, body) // another key
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		now  time.Time
		want error
	}{
		{"valid", specHeaders(specSignature, specTimestamp), body, now, nil},
		{"4m59s late", specHeaders(specSignature, specTimestamp), body, now.Add(Tolerance - time.Second), nil},
		{"4m59s early", specHeaders(specSignature, specTimestamp), body, now.Add(-Tolerance + time.Second), nil},
		{"too old", specHeaders(specSignature, specTimestamp), body, now.Add(Tolerance + time.Second), ErrTimestamp},
		{"from the future", specHeaders(specSignature, specTimestamp), body, now.Add(-Tolerance - time.Second), ErrTimestamp},
		{"timestamp not a number", specHeaders(specSignature, specTimestamp), body, now, nil},
		{"body changed", specHeaders(specSignature, specTimestamp), []byte(`{"test": 2432232315}`), now, ErrSignature},
		{"other key", specHeaders(other, specTimestamp), body, now, ErrSignature},
		{"several, one valid (rotation)", specHeaders(other+" v2,abc "+specSignature, specTimestamp), body, now, nil},
		{"not base64", specHeaders("v1,%%%", specTimestamp), body, now, ErrSignature},
		{"no version", specHeaders(specSignature[3:], specTimestamp), body, now, ErrSignature},
		{"no headers", http.Header{}, body, now, ErrNoSignature},
	} {
		if tc.name == "timestamp not a number" {
			tc.h.Set(HeaderTimestamp, "yesterday")
			tc.want = ErrTimestamp
		}
		if err := Verify(specSecret, tc.h, tc.body, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The id is signed: the same body and signature under another id fail.
	h := specHeaders(specSignature, specTimestamp)
	h.Set(HeaderID, "msg_other")
	if err := Verify(specSecret, h, body, now); !errors.Is(err, ErrSignature) {
		t.Errorf("another id: %v", err)
	}
}

func TestSecretForms(t *testing.T) {
	// whsec_ secrets are base64 keys; any other secret is its own bytes.
	raw, _ := Sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", specMsgID, time.Unix(specTimestamp, 0), []byte(specPayload))
	if raw == specSignature {
		t.Fatal("a secret without whsec_ was base64-decoded")
	}
	if err := Verify("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", specHeaders(raw, specTimestamp), []byte(specPayload), time.Unix(specTimestamp, 0)); err != nil {
		t.Fatal(err)
	}
	// The README's shell recipe for a raw secret:
	// printf '%s.%s.%s' "$ID" "$TS" "$BODY" | openssl dgst -sha256 -hmac change-me -binary | base64
	if sig, _ := Sign("change-me", specMsgID, time.Unix(specTimestamp, 0), []byte(specPayload)); sig != "v1,FnoF8IzNDRiWCLBPgukVa7W/XFSOF1E5Z+KA0Iji2L8=" {
		t.Fatalf("raw secret: %s, openssl says v1,FnoF8IzNDRiWCLBPgukVa7W/XFSOF1E5Z+KA0Iji2L8=", sig)
	}
	for _, bad := range []string{"whsec_", "whsec_not base64!"} {
		if _, err := Sign(bad, "id", time.Now(), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
		c := Config{URL: "https://hooks.example.com/x", Secret: bad, Timeout: time.Second, MaxAge: time.Minute}
		if err := c.Validate(); err == nil {
			t.Errorf("config with secret %q accepted", bad)
		}
	}
}

// TestDeliverHeaders: a delivery carries the Standard Webhooks headers and,
// for one more release, the X-Faultline ones; a receiver verifies both.
func TestDeliverHeaders(t *testing.T) {
	got := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := Verify("whsec_c2VjcmV0LWtleS1ieXRlcw==", r.Header, body, time.Now())
		switch {
		case err != nil:
		case r.Header.Get(HeaderID) != "alert-1":
			err = errors.New("webhook-id is not the event id")
		case r.Header.Get("X-Faultline-Delivery") != "alert-1" || r.Header.Get("X-Faultline-Timestamp") != r.Header.Get(HeaderTimestamp):
			err = errors.New("legacy headers differ")
		case !LegacyVerify("whsec_c2VjcmV0LWtleS1ieXRlcw==", body, r.Header.Get("X-Faultline-Signature")):
			err = errors.New("legacy signature")
		}
		got <- err
	}))
	defer srv.Close()
	ev := sample()
	ev.ID = "alert-1"
	tgt := Target{Name: "t", URL: srv.URL, Secret: "whsec_c2VjcmV0LWtleS1ieXRlcw==", Format: "json", Timeout: Duration(5 * time.Second)}
	if err := NewClient("").Deliver(context.Background(), &tgt, &ev); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

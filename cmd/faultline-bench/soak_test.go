package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// TestSoakRequests checks that patched requests decode, and that every
// record carries its request's number and event time.
func TestSoakRequests(t *testing.T) {
	g, err := newSoakGen(3)
	if err != nil {
		t.Fatal(err)
	}
	bufs := g.buffers()
	for _, k := range []int64{0, 1, 5, 12345678901} {
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(g.request(bufs, k)); err != nil {
			t.Fatalf("request %d: %v", k, err)
		}
		rl := req.Logs().ResourceLogs()
		if rl.Len() != 1 {
			t.Fatalf("request %d: %d resources", k, rl.Len())
		}
		svc, _ := rl.At(0).Resource().Attributes().Get("service.name")
		if want := fmt.Sprintf("svc-%02d", k%3); svc.Str() != want {
			t.Errorf("request %d: service %q, want %q", k, svc.Str(), want)
		}
		recs := rl.At(0).ScopeLogs().At(0).LogRecords()
		if recs.Len() != perMsg {
			t.Fatalf("request %d: %d records", k, recs.Len())
		}
		base := otlptest.Base.Add(time.Duration(k/3) * time.Second)
		for i := 0; i < recs.Len(); i++ {
			r := recs.At(i)
			if want := fmt.Sprintf("%011d-%d: ", k, i); !strings.HasPrefix(r.Body().Str(), want) {
				t.Fatalf("request %d record %d: body %q, want prefix %q", k, i, r.Body().Str(), want)
			}
			want := base.Add(time.Duration(i) * time.Millisecond)
			if !r.Timestamp().AsTime().Equal(want) || !r.ObservedTimestamp().AsTime().Equal(want) {
				t.Fatalf("request %d record %d: time %v observed %v, want %v", k, i, r.Timestamp().AsTime(), r.ObservedTimestamp().AsTime(), want)
			}
		}
	}
}

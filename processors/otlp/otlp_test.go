package otlp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares v, as indented JSON, with testdata/golden/name.
func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; run go test -update and review the diff\ngot:\n%s", name, got)
	}
}

// nanSafe makes NaN and Inf representable in JSON golden files.
type nanSafe float64

func (f nanSafe) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return json.Marshal(fmtFloat(v))
	}
	return json.Marshal(v)
}

func fmtFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	}
	return "-Inf"
}

func TestLogsGolden(t *testing.T) {
	b := otlp.NewBatch()
	n, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest("g", 3))
	if err != nil || n != 3 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	golden(t, "logs.json", b.Logs)
}

func TestMetricsGoldenProtobufAndJSONAgree(t *testing.T) {
	b := otlp.NewBatch()
	n, err := b.Append(otlp.SignalMetrics, otlp.FormatProtobuf, otlptest.MetricsRequest())
	if err != nil || n != 7 {
		t.Fatalf("Append = %d, %v; want 7 points", n, err)
	}
	j := otlp.NewBatch()
	if _, err := j.Append(otlp.SignalMetrics, otlp.FormatAuto, otlptest.MetricsJSON()); err != nil {
		t.Fatal(err)
	}
	gv := make([]nanSafe, len(b.Gauge.Value))
	for i, v := range b.Gauge.Value {
		gv[i] = nanSafe(v)
	}
	view := map[string]any{
		"gauge": map[string]any{"common": b.Gauge.MetricCommon, "value": gv, "exemplars": b.Gauge.Exemplars},
		"sum":   b.Sum, "histogram": b.Histogram, "exponential_histogram": b.ExpHistogram, "summary": b.Summary,
	}
	golden(t, "metrics.json", view)
	// The JSON encoding decodes to the same rows (NaN aside, which JSON
	// carries as a string and pdata decodes the same).
	if len(j.Gauge.Value) != 2 || !math.IsNaN(j.Gauge.Value[1]) || j.Histogram.Len() != 2 || j.Summary.Len() != 1 || j.ExpHistogram.Len() != 1 || j.Sum.Len() != 1 {
		t.Fatalf("JSON decode differs: %d gauges, %d histograms", len(j.Gauge.Value), j.Histogram.Len())
	}
	if got, want := j.Gauge.Attributes.Row(0), b.Gauge.Attributes.Row(0); len(got) != len(want) || got[3] != want[3] {
		t.Fatalf("attributes differ between JSON and protobuf: %v vs %v", got, want)
	}
}

func TestAwkwardValues(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "bad\xffname")
	recs := rl.ScopeLogs().AppendEmpty().LogRecords()
	observed := pcommon.NewTimestampFromTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r0 := recs.AppendEmpty() // Timestamp 0: falls back to ObservedTimestamp
	r0.SetObservedTimestamp(observed)
	r1 := recs.AppendEmpty() // beyond DateTime64(9): clamped
	r1.SetTimestamp(pcommon.Timestamp(math.MaxUint64))
	r1.SetSeverityNumber(plog.SeverityNumber(99))
	r2 := recs.AppendEmpty() // no timestamps, empty body
	r2.Body().SetEmptyMap().PutInt("k", 1)
	big := r2.Attributes()
	for i := 0; i < 5000; i++ {
		big.PutInt(string(rune('a'+i%26))+string(rune('0'+i/26%10))+string(rune('A'+i/260)), int64(i))
	}
	p, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	b := otlp.NewBatch()
	if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, p); err != nil {
		t.Fatal(err)
	}
	l := &b.Logs
	if l.Timestamp[0] != int64(observed) || l.Timestamp[1] != math.MaxInt64 || l.Timestamp[2] != 0 {
		t.Errorf("timestamps = %v", l.Timestamp)
	}
	if l.ServiceName[0] != "bad\uFFFDname" {
		t.Errorf("invalid UTF-8 not replaced: %q", l.ServiceName[0])
	}
	if l.SeverityNumber[1] != 99 || l.Body[2] != `{"k":1}` {
		t.Errorf("severity %d body %q", l.SeverityNumber[1], l.Body[2])
	}
	if got := len(l.LogAttributes.Row(2)); got != big.Len() {
		t.Errorf("huge attribute map: %d of %d keys kept", got, big.Len())
	}
}

func TestEmptyAndBadInput(t *testing.T) {
	b := otlp.NewBatch()
	for _, p := range [][]byte{nil, []byte("{}"), []byte(`{"resourceLogs":[]}`)} {
		if n, err := b.Append(otlp.SignalLogs, otlp.FormatAuto, p); n != 0 || err != nil {
			t.Errorf("Append(%q) = %d, %v; want 0 rows, no error", p, n, err)
		}
	}
	good := otlptest.LogsRequest("x", 10)
	if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, good); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{good[:len(good)-7], []byte("{not json"), []byte(`{"resourceLogs":"x"}`), {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		n, err := b.Append(otlp.SignalLogs, otlp.FormatAuto, p)
		if !errors.Is(err, otlp.ErrDecode) || n != 0 {
			t.Errorf("Append(%q...) = %d, %v; want ErrDecode", p[:min(len(p), 12)], n, err)
		}
	}
	if b.Records() != 10 || b.Logs.LogAttributes.Offsets[9] != uint64(len(b.Logs.LogAttributes.Keys)) {
		t.Fatalf("a failed Append changed the batch: %d records", b.Records())
	}
	b.Reset()
	if b.Records() != 0 {
		t.Fatal("Reset left rows")
	}
}

// FuzzAppend: no input panics, and a failed Append leaves the batch as it
// was.
func FuzzAppend(f *testing.F) {
	f.Add(uint8(1), otlptest.LogsRequest("f", 2))
	f.Add(uint8(2), otlptest.MetricsRequest())
	f.Add(uint8(2), otlptest.MetricsJSON())
	f.Add(uint8(1), []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}`))
	f.Fuzz(func(t *testing.T, sig uint8, p []byte) {
		b := otlp.NewBatch()
		if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest("base", 1)); err != nil {
			t.Fatal(err)
		}
		before := b.Records()
		snapshot, _ := json.Marshal(b)
		n, err := b.Append(otlp.Signal(sig%2+1), otlp.FormatAuto, p)
		if err != nil {
			after, _ := json.Marshal(b)
			if b.Records() != before || !bytes.Equal(snapshot, after) {
				t.Fatalf("failed Append changed the batch: %d -> %d rows", before, b.Records())
			}
		}
		if err == nil && b.Records() != before+n {
			t.Fatalf("Append reported %d rows, batch grew by %d", n, b.Records()-before)
		}
	})
}

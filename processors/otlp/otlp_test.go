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
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

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
	goldenFile(t, filepath.Join("testdata", "golden", name), append(got, '\n'))
}

// goldenFile compares got with the file at path, or with -update writes it.
func goldenFile(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	i := 0
	for i < len(g) && i < len(w) && bytes.Equal(g[i], w[i]) {
		i++
	}
	line := func(l [][]byte) []byte {
		if i < len(l) {
			return l[i][:min(len(l[i]), 200)]
		}
		return nil
	}
	t.Errorf("%s differs from what the test makes, first at line %d; run go test -update and review the diff\ngot:  %s\nwant: %s",
		path, i+1, line(g), line(w))
}

// rowsJSON is every row of b as JSON. An empty column reads the same
// whether its slice is nil or not.
func rowsJSON(t *testing.T, b *otlp.Batch) []byte {
	t.Helper()
	j, err := json.Marshal(otlp.View(&b.Src, b))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestGolden decodes each OTLP/JSON request in testdata/golden (one per
// table: attributes of every value type, exemplars, flags, empty and
// missing fields), and the same request as protobuf, and compares the rows
// with the golden file beside it. go test -update rewrites the golden rows
// from the inputs.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  otlp.Signal
		rows func(*otlp.Batch) any
	}{
		{"logs", otlp.SignalLogs, func(b *otlp.Batch) any { return &b.Logs }},
		{"gauge", otlp.SignalMetrics, func(b *otlp.Batch) any { return &b.Gauge }},
		{"sum", otlp.SignalMetrics, func(b *otlp.Batch) any { return &b.Sum }},
		{"histogram", otlp.SignalMetrics, func(b *otlp.Batch) any { return &b.Histogram }},
		{"exponential_histogram", otlp.SignalMetrics, func(b *otlp.Batch) any { return &b.ExpHistogram }},
		{"summary", otlp.SignalMetrics, func(b *otlp.Batch) any { return &b.Summary }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "golden", tc.name+".otlp.json"))
			if err != nil {
				t.Fatal(err)
			}
			pb := toProto(t, tc.sig, in)
			var got [][]byte
			for _, p := range [][]byte{in, pb} {
				b := otlp.NewBatch()
				n, err := b.Append(tc.sig, otlp.FormatAuto, p)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 || n != b.Records() {
					t.Fatalf("Append = %d rows, batch holds %d; want every row in the %s table", n, b.Records(), tc.name)
				}
				j, err := json.MarshalIndent(otlp.View(&b.Src, tc.rows(b)), "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				if got = append(got, j); n != rowCount(t, j) {
					t.Fatalf("Append = %d rows, the %s table has %d", n, tc.name, rowCount(t, j))
				}
			}
			if !bytes.Equal(got[0], got[1]) {
				t.Fatalf("JSON and protobuf decode to different rows\nJSON:\n%s\nprotobuf:\n%s", got[0], got[1])
			}
			golden(t, tc.name+".rows.json", json.RawMessage(got[1]))
		})
	}
}

// toProto re-encodes an OTLP/JSON request as protobuf.
func toProto(t *testing.T, sig otlp.Signal, j []byte) []byte {
	t.Helper()
	var p []byte
	var err error
	if sig == otlp.SignalLogs {
		r := plogotlp.NewExportRequest()
		if err = r.UnmarshalJSON(j); err == nil {
			p, err = r.MarshalProto()
		}
	} else {
		r := pmetricotlp.NewExportRequest()
		if err = r.UnmarshalJSON(j); err == nil {
			p, err = r.MarshalProto()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rowCount is the length of the rows' time column.
func rowCount(t *testing.T, rows []byte) int {
	t.Helper()
	var cols struct{ Timestamp, TimeUnix []json.RawMessage }
	if err := json.Unmarshal(rows, &cols); err != nil {
		t.Fatal(err)
	}
	return len(cols.Timestamp) + len(cols.TimeUnix)
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
	if s := b.Src.String(l.ServiceName[0]); s != "bad\uFFFDname" {
		t.Errorf("invalid UTF-8 not replaced: %q", s)
	}
	if body := b.Src.String(l.Body[2]); l.SeverityNumber[1] != 99 || body != `{"k":1}` {
		t.Errorf("severity %d body %q", l.SeverityNumber[1], body)
	}
	if got := len(l.LogAttributes.Row(&b.Src, 2)); got != big.Len() {
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
// was. sig 0 is logs, 1 metrics; the seeds are testdata/fuzz/FuzzAppend
// (see TestFuzzCorpus).
func FuzzAppend(f *testing.F) {
	f.Fuzz(func(t *testing.T, sig uint8, p []byte) {
		b := otlp.NewBatch()
		if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, otlptest.LogsRequest("base", 1)); err != nil {
			t.Fatal(err)
		}
		before := b.Records()
		snapshot := rowsJSON(t, b)
		n, err := b.Append(otlp.Signal(sig%2+1), otlp.FormatAuto, p)
		if err != nil {
			if after := rowsJSON(t, b); b.Records() != before || !bytes.Equal(snapshot, after) {
				t.Fatalf("failed Append changed the batch: %d -> %d rows\nbefore: %s\nafter:  %s", before, b.Records(), snapshot, after)
			}
		}
		if err == nil && b.Records() != before+n {
			t.Fatalf("Append reported %d rows, batch grew by %d", n, b.Records()-before)
		}
	})
}

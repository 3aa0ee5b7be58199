package otlp

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// decodeBoth decodes p with the wire walker and with pdata.
func decodeBoth(t testing.TB, p []byte) (fast, ref *Batch, fastErr, refErr error) {
	fast, ref = NewBatch(), NewBatch()
	_, fastErr = fast.Append(SignalLogs, FormatProtobuf, p)
	slowPath = true
	_, refErr = ref.Append(SignalLogs, FormatProtobuf, p)
	slowPath = false
	return
}

func awkwardLogs() []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	ra := rl.Resource().Attributes()
	ra.PutStr("service.name", "bad\xffname")
	ra.PutStr("deployment.environment", "legacy")
	ra.PutInt("pid", -42)
	ra.PutDouble("ratio", 1e-7)
	ra.PutDouble("big", 1e21)
	ra.PutDouble("nan", math.NaN())
	ra.PutBool("on", true)
	ra.PutEmptyBytes("raw").FromRaw([]byte{0, 1, 2, 255})
	ra.PutEmpty("empty")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("s")
	sl.Scope().Attributes().PutStr("k", "v")
	recs := sl.LogRecords()
	r0 := recs.AppendEmpty()
	r0.SetObservedTimestamp(pcommon.Timestamp(5))
	r0.Body().SetInt(7)
	r1 := recs.AppendEmpty()
	r1.SetTimestamp(pcommon.Timestamp(math.MaxUint64))
	r1.SetSeverityNumber(plog.SeverityNumber(99))
	r1.SetFlags(plog.DefaultLogRecordFlags.WithIsSampled(true))
	r1.SetEventName("e")
	r1.Body().SetDouble(2.5)
	r2 := recs.AppendEmpty()
	r2.Attributes().PutStr("x", "y\xfe")
	rl2 := ld.ResourceLogs().AppendEmpty() // a second resource without attributes
	rl2.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("b")
	b, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	return b
}

func mapBody() []byte {
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetEmptyMap().PutStr("k", "v")
	lr.Attributes().PutEmptySlice("list").AppendEmpty().SetInt(1)
	b, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	return b
}

// goldenScalarLogs is testdata/golden/logs.otlp.json as protobuf without
// its array and map values, which send a request to pdata, so the wire
// walker decodes it on its own.
func goldenScalarLogs(t testing.TB) []byte {
	j, err := os.ReadFile(filepath.Join("testdata", "golden", "logs.otlp.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := plogotlp.NewExportRequest()
	if err := r.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	nested := func(_ string, v pcommon.Value) bool {
		return v.Type() == pcommon.ValueTypeSlice || v.Type() == pcommon.ValueTypeMap
	}
	for _, rl := range r.Logs().ResourceLogs().All() {
		rl.Resource().Attributes().RemoveIf(nested)
		for _, sl := range rl.ScopeLogs().All() {
			sl.Scope().Attributes().RemoveIf(nested)
			for _, lr := range sl.LogRecords().All() {
				lr.Attributes().RemoveIf(nested)
				if nested("", lr.Body()) {
					lr.Body().SetStr("was nested")
				}
			}
		}
	}
	p, err := r.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWireWalkerMatchesPdata(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     []byte
		walks bool // the wire walker decodes it without falling back
	}{
		{"realistic", otlptest.LogsRequest("w", 200), true},
		{"awkward", awkwardLogs(), true},
		{"golden input, scalar values", goldenScalarLogs(t), true},
		{"map body", mapBody(), false},
		{"empty", nil, true},
	} {
		if _, err := NewBatch().appendLogsProto(tc.p); (err == nil) != tc.walks {
			t.Errorf("%s: wire walker returned %v, want it to decode on its own: %v", tc.name, err, tc.walks)
		}
		fast, ref, fe, re := decodeBoth(t, tc.p)
		if (fe == nil) != (re == nil) {
			t.Fatalf("%s: errors differ: %v vs %v", tc.name, fe, re)
		}
		if !sameLogs(fast, ref) {
			t.Fatalf("%s: rows differ\nwire:  %+v\npdata: %+v", tc.name, view(&fast.Src, &fast.Logs), view(&ref.Src, &ref.Logs))
		}
	}
}

// FuzzWireWalker: the wire walker and pdata agree on every input. The
// seeds are testdata/fuzz/FuzzWireWalker (see TestFuzzCorpus).
func FuzzWireWalker(f *testing.F) {
	f.Fuzz(func(t *testing.T, p []byte) {
		fast, ref, fe, re := decodeBoth(t, p)
		if (fe == nil) != (re == nil) {
			t.Fatalf("errors differ: %v vs %v", fe, re)
		}
		if fe == nil && !sameLogs(fast, ref) {
			t.Fatalf("rows differ")
		}
	})
}

// appendCost sums the wall and CPU time of decodes.
type appendCost struct {
	wall, cpu time.Duration
	records   int
}

// run decodes p into batch, emptied first, on the wire walker or on pdata.
func (c *appendCost) run(b *testing.B, batch *Batch, p []byte, pdata bool) {
	slowPath = pdata
	defer func() { slowPath = false }()
	batch.Reset()
	c0, t0 := otlptest.CPUTime(), time.Now()
	n, err := batch.Append(SignalLogs, FormatProtobuf, p)
	c.wall += time.Since(t0)
	c.cpu += otlptest.CPUTime() - c0
	c.records += n
	if err != nil {
		b.Fatal(err)
	}
}

func (c *appendCost) nsPerRecord() float64 { return float64(c.wall.Nanoseconds()) / float64(c.records) }
func (c *appendCost) cpuPerRecord() float64 {
	return float64(c.cpu.Nanoseconds()) / 1e3 / float64(c.records)
}

// BenchmarkAppendLogs decodes a realistic 1000-record request on each path
// alone, then on both in turns ("ratio"), which reports the wire walker's
// time and CPU as a fraction of pdata's measured in the same run, so the
// figure holds on a noisy machine where the absolute ones drift. CPU is the
// whole process's (garbage collection included, most of pdata's cost).
func BenchmarkAppendLogs(b *testing.B) {
	p := otlptest.LogsRequest("b", 1000)
	for _, mode := range []struct {
		name  string
		pdata bool
	}{{"wire", false}, {"pdata", true}} {
		b.Run(mode.name, func(b *testing.B) {
			batch := NewBatch()
			var c appendCost
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.run(b, batch, p, mode.pdata)
			}
			b.ReportMetric(c.nsPerRecord(), "ns/record")
			b.ReportMetric(c.cpuPerRecord(), "CPU-us/record")
		})
	}
	b.Run("ratio", func(b *testing.B) {
		wb, pb := NewBatch(), NewBatch()
		var wire, ref appendCost
		// An op is one decode on each path. The paths take turns in blocks,
		// so the garbage pdata leaves is mostly collected while pdata runs,
		// not billed to the wire walker's next decode.
		const block = 16
		for done := 0; done < b.N; done += block {
			k := min(block, b.N-done)
			for range k {
				wire.run(b, wb, p, false)
			}
			for range k {
				ref.run(b, pb, p, true)
			}
		}
		b.ReportMetric(0, "ns/op") // both paths together: not a figure of either
		b.ReportMetric(wire.nsPerRecord()/ref.nsPerRecord(), "wire/pdata")
		b.ReportMetric(wire.cpuPerRecord()/ref.cpuPerRecord(), "wire/pdata-CPU")
	})
}

// TestStringKV pins which KeyValue layouts take the one-pass path; the
// values it returns are held to pdata by FuzzWireWalker.
func TestStringKV(t *testing.T) {
	kv := func(key, val string) []byte {
		av := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), val)
		b := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), key)
		return protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType), av)
	}
	long := strings.Repeat("x", 128) // a two-byte length
	for _, tc := range []struct {
		name string
		p    []byte
		ok   bool
		k, v string
	}{
		{"key and string", kv("http.route", "/cart"), true, "http.route", "/cart"},
		{"empty key and value", kv("", ""), true, "", ""},
		{"longest value with one-byte lengths", kv("k", long[:125]), true, "k", long[:125]},
		{"two-byte key length", kv(long, "v"), false, "", ""},
		{"value message too long for one byte", kv("k", long[:126]), false, "", ""},
		{"trailing field", append(kv("k", "v"), 0x18, 0x01), false, "", ""},
		{"int value", protowire.AppendBytes(protowire.AppendTag(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "k"), 2, protowire.BytesType), []byte{0x18, 0x07}), false, "", ""},
		{"value before key, as pdata writes it", append(kv("k", "v")[3:], kv("k", "v")[:3]...), true, "k", "v"},
		{"value before key, trailing field", append(append(kv("k", "v")[3:], kv("k", "v")[:3]...), 0x18, 0x01), false, "", ""},
		{"value before key, int value", append([]byte{0x12, 0x02, 0x18, 0x07}, kv("k", "v")[:3]...), false, "", ""},
		{"value before key, twice", append(kv("k", "v")[3:], kv("k", "v")[3:]...), false, "", ""},
		{"truncated", kv("key", "value")[:7], false, "", ""},
	} {
		kb, vb, ok := stringKV(tc.p)
		if k, v := string(kb), string(vb); ok != tc.ok || k != tc.k || v != tc.v {
			t.Errorf("%s: got %q, %q, %v; want %q, %q, %v", tc.name, k, v, ok, tc.k, tc.v, tc.ok)
		}
	}
}

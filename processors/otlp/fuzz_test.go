package otlp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// Signals as FuzzAppend's first argument chooses them.
const (
	fuzzLogs    = uint8(0)
	fuzzMetrics = uint8(1)
)

// TestFuzzCorpus checks the named seed files in testdata/fuzz are what
// fuzzSeeds makes (go test -update writes them). Every go test runs them
// through their fuzz target; files with hashes for names are inputs the
// fuzzer found, kept as regression tests.
func TestFuzzCorpus(t *testing.T) {
	for name, args := range fuzzSeeds(t) {
		goldenFile(t, filepath.Join("testdata", "fuzz", name), corpusFile(args...))
	}
}

// corpusFile encodes a fuzz input in the "go test fuzz v1" format.
func corpusFile(args ...any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch a := a.(type) {
		case uint8:
			fmt.Fprintf(&b, "byte(%q)\n", a)
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", a)
		default:
			panic(fmt.Sprintf("corpusFile: no encoding for %T", a))
		}
	}
	return []byte(b.String())
}

// fuzzSeeds are the seed inputs by file path below testdata/fuzz.
func fuzzSeeds(t *testing.T) map[string][]any {
	realistic := otlptest.LogsRequest("f", 3)
	logs := map[string][]byte{ // protobuf logs, for both targets
		"empty":                nil,
		"realistic":            realistic,
		"truncated":            realistic[:len(realistic)-7],
		"bad-varint":           {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"awkward":              otlp.AwkwardLogs(),
		"map-body":             otlp.MapBody(),
		"golden-scalar":        otlp.GoldenScalarLogs(t),
		"invalid-utf8":         invalidUTF8Logs(),
		"zero-timestamps":      zeroTimestampLogs(),
		"huge-attribute-map":   hugeAttributeLogs(1000),
		"nan-and-inf-doubles":  nanLogs(),
		"unknown-fields-only":  {0xf8, 0x07, 0x01}, // field 127, varint 1
		"resource-only-no-log": resourceOnlyLogs(),
	}
	seeds := map[string][]any{}
	for name, p := range logs {
		seeds["FuzzWireWalker/"+name] = []any{p}
		seeds["FuzzAppend/logs-"+name] = []any{fuzzLogs, p}
	}
	metrics := map[string][]byte{ // protobuf metrics for FuzzMetricsWireWalker
		"empty":               nil,
		"otlptest":            otlptest.MetricsRequest(),
		"truncated":           otlptest.MetricsRequest()[:len(otlptest.MetricsRequest())-5],
		"bad-varint":          {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"unknown-fields-only": {0xf8, 0x07, 0x01},
		"logs-as-metrics":     realistic,
		"realistic":           otlp.BenchMetrics(2),
		"random-scalar":       otlp.RandomMetrics(3, false),
		"random-nested":       otlp.RandomMetrics(4, true),
		"random-scalar-2":     otlp.RandomMetrics(11, false),
	}
	for _, name := range []string{"gauge", "sum", "histogram", "exponential_histogram", "summary"} {
		metrics["golden-"+name] = otlp.GoldenMetrics(t, name, false)
		metrics["golden-"+name+"-scalar"] = otlp.GoldenMetrics(t, name, true)
	}
	for name, p := range metrics {
		seeds["FuzzMetricsWireWalker/"+name] = []any{p}
	}
	seeds["FuzzAppend/metrics-empty"] = []any{fuzzMetrics, []byte(nil)}
	seeds["FuzzAppend/metrics-protobuf"] = []any{fuzzMetrics, otlptest.MetricsRequest()}
	seeds["FuzzAppend/metrics-json"] = []any{fuzzMetrics, otlptest.MetricsJSON()}
	seeds["FuzzAppend/logs-as-metrics"] = []any{fuzzMetrics, realistic}
	seeds["FuzzAppend/logs-json-truncated"] = []any{fuzzLogs, []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stri`)}
	seeds["FuzzAppend/logs-json-wrong-type"] = []any{fuzzLogs, []byte(`{"resourceLogs":"x"}`)}
	seeds["FuzzAppend/logs-json-invalid-utf8"] = []any{fuzzLogs, []byte("{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":{\"stringValue\":\"a\xffb\"}}]}]}]}")}
	seeds["FuzzAppend/metrics-json-nan"] = []any{fuzzMetrics, []byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"asDouble":"NaN"},{"asDouble":"Infinity"}]}}]}]}]}`)}
	// The golden inputs: every table, as JSON and as protobuf.
	for _, in := range []struct {
		name string
		sig  otlp.Signal
	}{
		{"logs", otlp.SignalLogs}, {"gauge", otlp.SignalMetrics}, {"sum", otlp.SignalMetrics},
		{"histogram", otlp.SignalMetrics}, {"exponential_histogram", otlp.SignalMetrics}, {"summary", otlp.SignalMetrics},
	} {
		j, err := os.ReadFile(filepath.Join("testdata", "golden", in.name+".otlp.json"))
		if err != nil {
			t.Fatal(err)
		}
		sig := fuzzMetrics
		if in.sig == otlp.SignalLogs {
			sig = fuzzLogs
		}
		seeds["FuzzAppend/golden-"+in.name+"-json"] = []any{sig, j}
		seeds["FuzzAppend/golden-"+in.name+"-protobuf"] = []any{sig, toProto(t, in.sig, j)}
	}
	return seeds
}

func logsProto(ld plog.Logs) []byte {
	p, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		panic(err)
	}
	return p
}

// invalidUTF8Logs has invalid UTF-8 in every string the rows take.
func invalidUTF8Logs() []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.SetSchemaUrl("s\xff")
	rl.Resource().Attributes().PutStr("service.name", "svc\xfe")
	rl.Resource().Attributes().PutStr("k\xff", "v")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("n\xc3")
	sl.Scope().SetVersion("\xed\xa0\x80") // a surrogate half
	lr := sl.LogRecords().AppendEmpty()
	lr.SetSeverityText("WARN\xff")
	lr.SetEventName("e\xff")
	lr.Body().SetStr("body \xff\xfe\xfd")
	lr.Attributes().PutStr("a", "\x80")
	return logsProto(ld)
}

// zeroTimestampLogs has records with no timestamp, only an observed one,
// and both at the largest value the wire holds.
func zeroTimestampLogs() []byte {
	ld := plog.NewLogs()
	recs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	recs.AppendEmpty().Body().SetStr("no timestamps")
	r := recs.AppendEmpty()
	r.SetObservedTimestamp(pcommon.Timestamp(1))
	r = recs.AppendEmpty()
	r.SetTimestamp(pcommon.Timestamp(^uint64(0)))
	r.SetObservedTimestamp(pcommon.Timestamp(^uint64(0)))
	return logsProto(ld)
}

// hugeAttributeLogs has one record with n attributes and a resource with n.
func hugeAttributeLogs(n int) []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	a := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Attributes()
	for i := 0; i < n; i++ {
		a.PutInt(fmt.Sprintf("attr.%d", i), int64(i))
		rl.Resource().Attributes().PutStr(fmt.Sprintf("res.%d", i), "v")
	}
	return logsProto(ld)
}

// nanLogs has NaN and infinite doubles as attributes and as a body.
func nanLogs() []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutDouble("nan", nan())
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetDouble(nan())
	lr.Attributes().PutDouble("inf", 1/zero)
	lr.Attributes().PutDouble("-inf", -1/zero)
	return logsProto(ld)
}

var zero float64

func nan() float64 { return zero / zero }

// resourceOnlyLogs has resources and scopes but no record.
func resourceOnlyLogs() []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "idle")
	rl.ScopeLogs().AppendEmpty().Scope().SetName("s")
	ld.ResourceLogs().AppendEmpty()
	return logsProto(ld)
}

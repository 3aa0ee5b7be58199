package otlp

// Exported for the external tests' seed corpus (fuzz_test.go).
var (
	AwkwardLogs      = awkwardLogs
	MapBody          = mapBody
	GoldenScalarLogs = goldenScalarLogs
	View             = view
	GoldenMetrics    = goldenMetrics
	BenchMetrics     = benchMetrics
)

// RandomMetrics is randomMetrics as protobuf.
func RandomMetrics(seed uint64, nested bool) []byte {
	return metricsProtoOf(randomMetrics(seed, nested))
}

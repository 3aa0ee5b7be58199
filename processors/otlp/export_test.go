package otlp

// Exported for the external tests' seed corpus (fuzz_test.go).
var (
	AwkwardLogs      = awkwardLogs
	MapBody          = mapBody
	GoldenScalarLogs = goldenScalarLogs
	View             = view
)

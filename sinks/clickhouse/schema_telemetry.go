package clickhouse

// The telemetry tables (versions 10-19): column-compatible with the
// OpenTelemetry Collector ClickHouse exporter, so Grafana's OpenTelemetry
// mode and existing SQL work unchanged, plus faultline's enrichment columns
// DeployId, DeployVersion and IncidentId. Of the exporter's skip indexes,
// otel_logs keeps only the one on TraceId (migration 28, with a minmax on
// Timestamp): the others cost more per inserted row than they save, as
// BenchmarkLogsSchemas measures. Every table keeps a
// deduplication window so a retried insert with the same
// insert_deduplication_token is dropped on plain MergeTree as well.

const metricCommonColumns = `
	ResourceAttributes    Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	ResourceSchemaUrl     String CODEC(ZSTD(1)),
	ScopeName             String CODEC(ZSTD(1)),
	ScopeVersion          String CODEC(ZSTD(1)),
	ScopeAttributes       Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
	ScopeSchemaUrl        String CODEC(ZSTD(1)),
	ServiceName           LowCardinality(String) CODEC(ZSTD(1)),
	MetricName            String CODEC(ZSTD(1)),
	MetricDescription     String CODEC(ZSTD(1)),
	MetricUnit            String CODEC(ZSTD(1)),
	Attributes            Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	StartTimeUnix         DateTime64(9) CODEC(Delta, ZSTD(1)),
	TimeUnix              DateTime64(9) CODEC(Delta, ZSTD(1)),`

const exemplarsColumn = `
	Exemplars Nested (
		FilteredAttributes Map(LowCardinality(String), String),
		TimeUnix DateTime64(9),
		Value Float64,
		SpanId String,
		TraceId String
	) CODEC(ZSTD(1)),`

const enrichmentColumns = `
	DeployId      LowCardinality(String) CODEC(ZSTD(1)),
	DeployVersion LowCardinality(String) CODEC(ZSTD(1)),
	IncidentId    LowCardinality(String) CODEC(ZSTD(1))`

const metricTableTail = `
) ENGINE = {{engine "MergeTree"}}
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
{{ttl "TimeUnix"}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000{{replicatedWindow}}`

func init() {
	register(
		Migration{Version: 10, Name: "otel_logs", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "otel_logs"}}{{.OnCluster}} (
	Timestamp          DateTime64(9) CODEC(Delta, ZSTD(1)),
	TraceId            String CODEC(ZSTD(1)),
	SpanId             String CODEC(ZSTD(1)),
	TraceFlags         UInt8,
	SeverityText       LowCardinality(String) CODEC(ZSTD(1)),
	SeverityNumber     UInt8,
	ServiceName        LowCardinality(String) CODEC(ZSTD(1)),
	Body               String CODEC(ZSTD(1)),
	ResourceSchemaUrl  LowCardinality(String) CODEC(ZSTD(1)),
	ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	ScopeSchemaUrl     LowCardinality(String) CODEC(ZSTD(1)),
	ScopeName          String CODEC(ZSTD(1)),
	ScopeVersion       LowCardinality(String) CODEC(ZSTD(1)),
	ScopeAttributes    Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	LogAttributes      Map(LowCardinality(String), String) CODEC(ZSTD(1)),
	EventName          String CODEC(ZSTD(1)),` + enrichmentColumns + `
) ENGINE = {{engine "MergeTree"}}
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)
{{ttl "Timestamp"}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000{{replicatedWindow}}`,
			`{{distributed "otel_logs" "cityHash64(ServiceName)"}}`}},
		Migration{Version: 11, Name: "otel_metrics_gauge", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "otel_metrics_gauge"}}{{.OnCluster}} (` + metricCommonColumns + `
	Value Float64 CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),` + exemplarsColumn + enrichmentColumns + metricTableTail,
			`{{distributed "otel_metrics_gauge" "cityHash64(ServiceName)"}}`}},
		Migration{Version: 12, Name: "otel_metrics_sum", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "otel_metrics_sum"}}{{.OnCluster}} (` + metricCommonColumns + `
	Value Float64 CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),` + exemplarsColumn + `
	AggregationTemporality Int32 CODEC(ZSTD(1)),
	IsMonotonic Bool CODEC(Delta, ZSTD(1)),` + enrichmentColumns + metricTableTail,
			`{{distributed "otel_metrics_sum" "cityHash64(ServiceName)"}}`}},
		Migration{Version: 13, Name: "otel_metrics_histogram", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "otel_metrics_histogram"}}{{.OnCluster}} (` + metricCommonColumns + `
	Count UInt64 CODEC(Delta, ZSTD(1)),
	Sum Float64 CODEC(ZSTD(1)),
	BucketCounts Array(UInt64) CODEC(ZSTD(1)),
	ExplicitBounds Array(Float64) CODEC(ZSTD(1)),` + exemplarsColumn + `
	Flags UInt32 CODEC(ZSTD(1)),
	Min Float64 CODEC(ZSTD(1)),
	Max Float64 CODEC(ZSTD(1)),
	AggregationTemporality Int32 CODEC(ZSTD(1)),` + enrichmentColumns + metricTableTail,
			`{{distributed "otel_metrics_histogram" "cityHash64(ServiceName)"}}`}},
		Migration{Version: 14, Name: "otel_metrics_exponential_histogram", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "otel_metrics_exponential_histogram"}}{{.OnCluster}} (` + metricCommonColumns + `
	Count UInt64 CODEC(Delta, ZSTD(1)),
	Sum Float64 CODEC(ZSTD(1)),
	Scale Int32 CODEC(ZSTD(1)),
	ZeroCount UInt64 CODEC(ZSTD(1)),
	PositiveOffset Int32 CODEC(ZSTD(1)),
	PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
	NegativeOffset Int32 CODEC(ZSTD(1)),
	NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),` + exemplarsColumn + `
	Flags UInt32 CODEC(ZSTD(1)),
	Min Float64 CODEC(ZSTD(1)),
	Max Float64 CODEC(ZSTD(1)),
	AggregationTemporality Int32 CODEC(ZSTD(1)),` + enrichmentColumns + metricTableTail,
			`{{distributed "otel_metrics_exponential_histogram" "cityHash64(ServiceName)"}}`}},
		Migration{Version: 15, Name: "otel_metrics_summary", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "otel_metrics_summary"}}{{.OnCluster}} (` + metricCommonColumns + `
	Count UInt64 CODEC(Delta, ZSTD(1)),
	Sum Float64 CODEC(ZSTD(1)),
	ValueAtQuantiles Nested(
		Quantile Float64,
		Value Float64
	) CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),` + enrichmentColumns + metricTableTail,
			`{{distributed "otel_metrics_summary" "cityHash64(ServiceName)"}}`}},
		// The exporter's otel_logs has TimestampTime, and queries written
		// for it (Grafana's among them) filter on it. A DEFAULT column costs
		// the writer nothing, since inserts name their columns, and rows
		// written before it read their value from Timestamp.
		Migration{Version: 16, Name: "otel_logs TimestampTime", Stmts: []string{`
ALTER TABLE {{.DB}}.{{local "otel_logs"}}{{.OnCluster}}
	ADD COLUMN IF NOT EXISTS TimestampTime DateTime DEFAULT toDateTime(Timestamp) AFTER Timestamp`,
			`{{if ne (local "otel_logs") "otel_logs"}}
ALTER TABLE {{.DB}}.otel_logs{{.OnCluster}}
	ADD COLUMN IF NOT EXISTS TimestampTime DateTime DEFAULT toDateTime(Timestamp) AFTER Timestamp{{end}}`}},
		// Two skip indexes that pay for themselves, measured by
		// BenchmarkLogsSchemas (docs/tables.md, "Ordering and indexes,
		// measured"): a minmax on Timestamp, since the sorting key's
		// toStartOfFiveMinutes(Timestamp) does not narrow a time range to
		// granules within a part, and a bloom filter on TraceId for
		// trace-to-logs lookups. The exporter's other skip indexes (attribute
		// maps, Body) cost more to write than they save. Parts written before
		// this migration have no index until merged; queries stay correct.
		Migration{Version: 28, Name: "otel_logs Timestamp and TraceId indexes", Stmts: []string{`
ALTER TABLE {{.DB}}.{{local "otel_logs"}}{{.OnCluster}}
	ADD INDEX IF NOT EXISTS idx_timestamp Timestamp TYPE minmax GRANULARITY 1,
	ADD INDEX IF NOT EXISTS idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1`}},
		// A re-formed batch is recognised only while its token is among
		// the table's last N inserts, and a crashed worker's messages come
		// back an ack wait (5m) later: 1000 held for about 3 inserts a
		// second over all workers (three workers at light traffic, 160k
		// records a second at heavy). 10000 holds ten times that, for a
		// few hundred KB of remembered hashes per table.
		Migration{Version: 29, Name: "telemetry tables remember 10000 insert tokens", Stmts: dedupWindow10k()},
	)
}

// dedupWindow10k raises the deduplication window of every telemetry table.
func dedupWindow10k() []string {
	var out []string
	for _, t := range telemetryTables {
		out = append(out, `ALTER TABLE {{.DB}}.{{local "`+t+`"}}{{.OnCluster}} MODIFY SETTING {{dedupWindow 10000}}`)
	}
	return out
}

// telemetryTables are the tables workers insert into.
var telemetryTables = []string{"otel_logs", "otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram",
	"otel_metrics_exponential_histogram", "otel_metrics_summary"}

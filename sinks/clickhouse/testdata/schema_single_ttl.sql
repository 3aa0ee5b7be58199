-- bootstrap
CREATE DATABASE IF NOT EXISTS `faultline`;

CREATE TABLE IF NOT EXISTS `faultline`.schema_migrations (
			Version UInt32, Name String, AppliedAt DateTime64(3) DEFAULT now64(3)
		) ENGINE = MergeTree() ORDER BY Version;

-- 10 otel_logs

CREATE TABLE IF NOT EXISTS `faultline`.otel_logs (
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
	EventName          String CODEC(ZSTD(1)),
	DeployId      LowCardinality(String) CODEC(ZSTD(1)),
	DeployVersion LowCardinality(String) CODEC(ZSTD(1)),
	IncidentId    LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)
TTL toDateTime(Timestamp) + toIntervalDay(30)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- 11 otel_metrics_gauge

CREATE TABLE IF NOT EXISTS `faultline`.otel_metrics_gauge (
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
	TimeUnix              DateTime64(9) CODEC(Delta, ZSTD(1)),
	Value Float64 CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),
	Exemplars Nested (
		FilteredAttributes Map(LowCardinality(String), String),
		TimeUnix DateTime64(9),
		Value Float64,
		SpanId String,
		TraceId String
	) CODEC(ZSTD(1)),
	DeployId      LowCardinality(String) CODEC(ZSTD(1)),
	DeployVersion LowCardinality(String) CODEC(ZSTD(1)),
	IncidentId    LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(30)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- 12 otel_metrics_sum

CREATE TABLE IF NOT EXISTS `faultline`.otel_metrics_sum (
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
	TimeUnix              DateTime64(9) CODEC(Delta, ZSTD(1)),
	Value Float64 CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),
	Exemplars Nested (
		FilteredAttributes Map(LowCardinality(String), String),
		TimeUnix DateTime64(9),
		Value Float64,
		SpanId String,
		TraceId String
	) CODEC(ZSTD(1)),
	AggregationTemporality Int32 CODEC(ZSTD(1)),
	IsMonotonic Bool CODEC(Delta, ZSTD(1)),
	DeployId      LowCardinality(String) CODEC(ZSTD(1)),
	DeployVersion LowCardinality(String) CODEC(ZSTD(1)),
	IncidentId    LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(30)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- 13 otel_metrics_histogram

CREATE TABLE IF NOT EXISTS `faultline`.otel_metrics_histogram (
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
	TimeUnix              DateTime64(9) CODEC(Delta, ZSTD(1)),
	Count UInt64 CODEC(Delta, ZSTD(1)),
	Sum Float64 CODEC(ZSTD(1)),
	BucketCounts Array(UInt64) CODEC(ZSTD(1)),
	ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
	Exemplars Nested (
		FilteredAttributes Map(LowCardinality(String), String),
		TimeUnix DateTime64(9),
		Value Float64,
		SpanId String,
		TraceId String
	) CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),
	Min Float64 CODEC(ZSTD(1)),
	Max Float64 CODEC(ZSTD(1)),
	AggregationTemporality Int32 CODEC(ZSTD(1)),
	DeployId      LowCardinality(String) CODEC(ZSTD(1)),
	DeployVersion LowCardinality(String) CODEC(ZSTD(1)),
	IncidentId    LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(30)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- 14 otel_metrics_exponential_histogram

CREATE TABLE IF NOT EXISTS `faultline`.otel_metrics_exponential_histogram (
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
	TimeUnix              DateTime64(9) CODEC(Delta, ZSTD(1)),
	Count UInt64 CODEC(Delta, ZSTD(1)),
	Sum Float64 CODEC(ZSTD(1)),
	Scale Int32 CODEC(ZSTD(1)),
	ZeroCount UInt64 CODEC(ZSTD(1)),
	PositiveOffset Int32 CODEC(ZSTD(1)),
	PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
	NegativeOffset Int32 CODEC(ZSTD(1)),
	NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),
	Exemplars Nested (
		FilteredAttributes Map(LowCardinality(String), String),
		TimeUnix DateTime64(9),
		Value Float64,
		SpanId String,
		TraceId String
	) CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),
	Min Float64 CODEC(ZSTD(1)),
	Max Float64 CODEC(ZSTD(1)),
	AggregationTemporality Int32 CODEC(ZSTD(1)),
	DeployId      LowCardinality(String) CODEC(ZSTD(1)),
	DeployVersion LowCardinality(String) CODEC(ZSTD(1)),
	IncidentId    LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(30)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- 15 otel_metrics_summary

CREATE TABLE IF NOT EXISTS `faultline`.otel_metrics_summary (
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
	TimeUnix              DateTime64(9) CODEC(Delta, ZSTD(1)),
	Count UInt64 CODEC(Delta, ZSTD(1)),
	Sum Float64 CODEC(ZSTD(1)),
	ValueAtQuantiles Nested(
		Quantile Float64,
		Value Float64
	) CODEC(ZSTD(1)),
	Flags UInt32 CODEC(ZSTD(1)),
	DeployId      LowCardinality(String) CODEC(ZSTD(1)),
	DeployVersion LowCardinality(String) CODEC(ZSTD(1)),
	IncidentId    LowCardinality(String) CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
TTL toDateTime(TimeUnix) + toIntervalDay(30)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- 16 otel_logs TimestampTime

ALTER TABLE `faultline`.otel_logs
	ADD COLUMN IF NOT EXISTS TimestampTime DateTime DEFAULT toDateTime(Timestamp) AFTER Timestamp;

-- 20 deploys

CREATE TABLE IF NOT EXISTS `faultline`.deploys (
	DeployId        String,
	Service         LowCardinality(String),
	Environment     LowCardinality(String),
	Version         String,
	Type            LowCardinality(String),
	Status          LowCardinality(String),
	DeployedAt      DateTime64(9) CODEC(Delta, ZSTD(1)),
	CommitSha       String,
	FirstCommitAt   Nullable(DateTime64(9)),
	LeadTimeSeconds Nullable(Float64),
	Author          String,
	Url             String,
	Attributes      Map(LowCardinality(String), String),
	ChangeFailure   Bool,
	FailureReason   String,
	RolledBackBy    String,
	UpdatedAt       DateTime64(9)
) ENGINE = ReplacingMergeTree(UpdatedAt)
ORDER BY (Environment, Service, DeployId)
SETTINGS non_replicated_deduplication_window = 1000;

-- 21 incidents

CREATE TABLE IF NOT EXISTS `faultline`.incidents (
	IncidentId           String,
	Service              LowCardinality(String),
	Environment          LowCardinality(String),
	Title                String,
	Severity             LowCardinality(String),
	Source               LowCardinality(String),
	StartedAt            DateTime64(9),
	ResolvedAt           Nullable(DateTime64(9)),
	TimeToRestoreSeconds Nullable(Float64),
	SuspectDeployId      String,
	SuspectVersion       String,
	Confidence           Float32,
	RestoredByDeployId   String,
	UpdatedAt            DateTime64(9)
) ENGINE = ReplacingMergeTree(UpdatedAt)
ORDER BY (Environment, Service, IncidentId)
SETTINGS non_replicated_deduplication_window = 1000;

-- 22 incident_suspects

CREATE TABLE IF NOT EXISTS `faultline`.incident_suspects (
	IncidentId  String,
	DeployId    String,
	Rank        UInt16,
	Score       Float32,
	Confidence  Float32,
	Reason      String,
	Service     LowCardinality(String),
	Environment LowCardinality(String),
	Version     String,
	UpdatedAt   DateTime64(9)
) ENGINE = ReplacingMergeTree(UpdatedAt)
ORDER BY (IncidentId, DeployId)
SETTINGS non_replicated_deduplication_window = 1000;

-- 23 dora_daily view

CREATE VIEW IF NOT EXISTS `faultline`.dora_daily AS
SELECT
	Day, Environment, Service,
	sum(IsDeploy)                             AS Deployments,
	sum(IsFailure)                            AS ChangeFailures,
	sum(HasLeadTime)                          AS LeadTimes,
	sum(LeadTime)                             AS LeadTimeSecondsSum,
	groupArrayIf(LeadTime, HasLeadTime = 1)   AS LeadTimeSeconds,
	uniqExactIf(IncidentId, IncidentId != '') AS Incidents,
	sum(IsResolved)                           AS ResolvedIncidents,
	sum(Restore)                              AS TimeToRestoreSecondsSum,
	groupArrayIf(Restore, IsResolved = 1)     AS TimeToRestoreSeconds,
	min(FirstDeployAt)                        AS FirstDeployAt,
	max(LastDeployAt)                         AS LastDeployAt
FROM (
	SELECT toDate(DeployedAt) AS Day, Environment, Service,
		toUInt64(1) AS IsDeploy, toUInt64(ChangeFailure) AS IsFailure,
		toUInt64(LeadTimeSeconds IS NOT NULL) AS HasLeadTime, ifNull(LeadTimeSeconds, 0) AS LeadTime,
		'' AS IncidentId, toUInt64(0) AS IsResolved, toFloat64(0) AS Restore,
		toNullable(DeployedAt) AS FirstDeployAt, toNullable(DeployedAt) AS LastDeployAt
	FROM `faultline`.deploys FINAL WHERE Status = 'succeeded'
	UNION ALL
	SELECT toDate(StartedAt), Environment, Service,
		toUInt64(0), toUInt64(0), toUInt64(0), toFloat64(0),
		IncidentId, toUInt64(ResolvedAt IS NOT NULL), ifNull(TimeToRestoreSeconds, 0),
		CAST(NULL AS Nullable(DateTime64(9))), CAST(NULL AS Nullable(DateTime64(9)))
	FROM `faultline`.incidents FINAL
)
GROUP BY Day, Environment, Service;

-- 24 dora_summary view

CREATE VIEW IF NOT EXISTS `faultline`.dora_summary AS
SELECT
	Environment, Service,
	countIf(Kind = 'deploy' AND Live)                       AS Deployments,
	countIf(Kind = 'deploy' AND Live AND Failure)           AS ChangeFailures,
	if(Deployments = 0, NULL, ChangeFailures / Deployments) AS ChangeFailureRate,
	uniqExactIf(Id, Kind = 'incident')                      AS Incidents,
	quantileExactInclusiveIf(0.5)(Seconds, Kind = 'incident' AND Seconds IS NOT NULL) AS MedianTimeToRestoreSeconds,
	quantileExactInclusiveIf(0.5)(Seconds, Kind = 'deploy' AND Live AND Seconds IS NOT NULL) AS MedianLeadTimeSeconds,
	if(Deployments = 0, 0, Deployments / greatest(1,
		dateDiff('second', minIf(At, Kind = 'deploy' AND Live), maxIf(At, Kind = 'deploy' AND Live)) / 86400)) AS DeploysPerDay
FROM (
	SELECT 'deploy' AS Kind, DeployId AS Id, Environment, Service, Status = 'succeeded' AS Live,
		ChangeFailure AS Failure, LeadTimeSeconds AS Seconds, DeployedAt AS At
	FROM `faultline`.deploys FINAL
	UNION ALL
	SELECT 'incident', IncidentId, Environment, Service, false, false, TimeToRestoreSeconds, StartedAt
	FROM `faultline`.incidents FINAL
)
GROUP BY Environment, Service;

-- 25 incidents signal and detection reason

ALTER TABLE `faultline`.incidents
	ADD COLUMN IF NOT EXISTS Signal LowCardinality(String) DEFAULT if(Source = 'detected', 'errors', 'explicit') AFTER Source,
	ADD COLUMN IF NOT EXISTS DetectionReason String AFTER Signal;

-- 26 incident_spans dictionary

CREATE OR REPLACE DICTIONARY `faultline`.incident_spans (
	Key        UInt64,
	StartNs    Int64,
	EndNs      Int64,
	IncidentId String
)
PRIMARY KEY Key
SOURCE(CLICKHOUSE(QUERY 'SELECT cityHash64(Service, Environment) AS Key, toUnixTimestamp64Nano(StartedAt) AS StartNs, ifNull(toUnixTimestamp64Nano(ResolvedAt), 9223372036854775807) - 1 AS EndNs, IncidentId FROM `faultline`.incidents FINAL'))
LIFETIME(MIN 5 MAX 10)
LAYOUT(RANGE_HASHED(range_lookup_strategy 'max'))
RANGE(MIN StartNs MAX EndNs);

-- 27 IncidentId from incident_spans

ALTER TABLE `faultline`.otel_logs
	DROP COLUMN IF EXISTS IncidentId,
	ADD COLUMN IncidentId String ALIAS dictGetOrDefault('faultline.incident_spans', 'IncidentId',
		cityHash64(ServiceName, if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])),
		toUnixTimestamp64Nano(Timestamp), '');


ALTER TABLE `faultline`.otel_metrics_gauge
	DROP COLUMN IF EXISTS IncidentId,
	ADD COLUMN IncidentId String ALIAS dictGetOrDefault('faultline.incident_spans', 'IncidentId',
		cityHash64(ServiceName, if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])),
		toUnixTimestamp64Nano(TimeUnix), '');


ALTER TABLE `faultline`.otel_metrics_sum
	DROP COLUMN IF EXISTS IncidentId,
	ADD COLUMN IncidentId String ALIAS dictGetOrDefault('faultline.incident_spans', 'IncidentId',
		cityHash64(ServiceName, if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])),
		toUnixTimestamp64Nano(TimeUnix), '');


ALTER TABLE `faultline`.otel_metrics_histogram
	DROP COLUMN IF EXISTS IncidentId,
	ADD COLUMN IncidentId String ALIAS dictGetOrDefault('faultline.incident_spans', 'IncidentId',
		cityHash64(ServiceName, if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])),
		toUnixTimestamp64Nano(TimeUnix), '');


ALTER TABLE `faultline`.otel_metrics_exponential_histogram
	DROP COLUMN IF EXISTS IncidentId,
	ADD COLUMN IncidentId String ALIAS dictGetOrDefault('faultline.incident_spans', 'IncidentId',
		cityHash64(ServiceName, if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])),
		toUnixTimestamp64Nano(TimeUnix), '');


ALTER TABLE `faultline`.otel_metrics_summary
	DROP COLUMN IF EXISTS IncidentId,
	ADD COLUMN IncidentId String ALIAS dictGetOrDefault('faultline.incident_spans', 'IncidentId',
		cityHash64(ServiceName, if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])),
		toUnixTimestamp64Nano(TimeUnix), '');

-- 28 otel_logs Timestamp and TraceId indexes

ALTER TABLE `faultline`.otel_logs
	ADD INDEX IF NOT EXISTS idx_timestamp Timestamp TYPE minmax GRANULARITY 1,
	ADD INDEX IF NOT EXISTS idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1;

-- 29 telemetry tables remember 10000 insert tokens
ALTER TABLE `faultline`.otel_logs MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE `faultline`.otel_metrics_gauge MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE `faultline`.otel_metrics_sum MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE `faultline`.otel_metrics_histogram MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE `faultline`.otel_metrics_exponential_histogram MODIFY SETTING non_replicated_deduplication_window = 10000;

ALTER TABLE `faultline`.otel_metrics_summary MODIFY SETTING non_replicated_deduplication_window = 10000;


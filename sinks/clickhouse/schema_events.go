package clickhouse

import "fmt"

// The deploy, incident and DORA schema (versions 20-29). The tables hold
// the latest state per id (ReplacingMergeTree by UpdatedAt): read them with
// FINAL or argMax. The views read them with FINAL, so they are exact at any
// moment, not only after merges.
func init() {
	register(
		Migration{Version: 20, Name: "deploys", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "deploys"}}{{.OnCluster}} (
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
) ENGINE = {{engine "ReplacingMergeTree(UpdatedAt)"}}
ORDER BY (Environment, Service, DeployId)
SETTINGS non_replicated_deduplication_window = 1000{{replicatedWindow}}`,
			`{{distributed "deploys" "cityHash64(DeployId)"}}`}},
		Migration{Version: 21, Name: "incidents", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "incidents"}}{{.OnCluster}} (
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
) ENGINE = {{engine "ReplacingMergeTree(UpdatedAt)"}}
ORDER BY (Environment, Service, IncidentId)
SETTINGS non_replicated_deduplication_window = 1000{{replicatedWindow}}`,
			`{{distributed "incidents" "cityHash64(IncidentId)"}}`}},
		Migration{Version: 22, Name: "incident_suspects", Stmts: []string{`
CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "incident_suspects"}}{{.OnCluster}} (
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
) ENGINE = {{engine "ReplacingMergeTree(UpdatedAt)"}}
ORDER BY (IncidentId, DeployId)
SETTINGS non_replicated_deduplication_window = 1000{{replicatedWindow}}`,
			`{{distributed "incident_suspects" "cityHash64(IncidentId)"}}`}},
		Migration{Version: 23, Name: "dora_daily view", Stmts: []string{`
CREATE VIEW IF NOT EXISTS {{.DB}}.dora_daily{{.OnCluster}} AS
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
	FROM {{.DB}}.deploys FINAL WHERE Status = 'succeeded'
	UNION ALL
	SELECT toDate(StartedAt), Environment, Service,
		toUInt64(0), toUInt64(0), toUInt64(0), toFloat64(0),
		IncidentId, toUInt64(ResolvedAt IS NOT NULL), ifNull(TimeToRestoreSeconds, 0),
		CAST(NULL AS Nullable(DateTime64(9))), CAST(NULL AS Nullable(DateTime64(9)))
	FROM {{.DB}}.incidents FINAL
)
GROUP BY Day, Environment, Service`}},
		Migration{Version: 24, Name: "dora_summary view", Stmts: []string{`
CREATE VIEW IF NOT EXISTS {{.DB}}.dora_summary{{.OnCluster}} AS
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
	FROM {{.DB}}.deploys FINAL
	UNION ALL
	SELECT 'incident', IncidentId, Environment, Service, false, false, TimeToRestoreSeconds, StartedAt
	FROM {{.DB}}.incidents FINAL
)
GROUP BY Environment, Service`}},
		// Which rule opened a detected incident, and why in words. Rows
		// written before this migration read as 'errors' (the one rule
		// then) or 'explicit'.
		Migration{Version: 25, Name: "incidents signal and detection reason", Stmts: []string{`
ALTER TABLE {{.DB}}.{{local "incidents"}}{{.OnCluster}}
	ADD COLUMN IF NOT EXISTS Signal LowCardinality(String) DEFAULT if(Source = 'detected', 'errors', 'explicit') AFTER Source,
	ADD COLUMN IF NOT EXISTS DetectionReason String AFTER Signal`,
			`{{if ne (local "incidents") "incidents"}}
ALTER TABLE {{.DB}}.incidents{{.OnCluster}}
	ADD COLUMN IF NOT EXISTS Signal LowCardinality(String) DEFAULT if(Source = 'detected', 'errors', 'explicit') AFTER Source,
	ADD COLUMN IF NOT EXISTS DetectionReason String AFTER Signal{{end}}`}},
		// Every telemetry row's IncidentId is the incident of its service
		// and environment open at its time, read through this dictionary
		// of incident spans when the column is read: a row written before
		// its incident was detected, confirmed or moved gets it all the
		// same, a retracted incident leaves no trace, and no row is ever
		// rewritten (docs/tables.md weighs this against updating rows).
		Migration{Version: 26, Name: "incident_spans dictionary", Stmts: []string{incidentSpansDict}},
		Migration{Version: 27, Name: "IncidentId from incident_spans", Stmts: incidentIDAlias()},
	)
}

// incidentSpansDict is the dictionary of incident spans: per service and
// environment (keyed by cityHash64 of the two: a one-word key looks up half
// again as fast as the pair of strings), [StartedAt, ResolvedAt) in Unix
// nanoseconds, an open incident running to the end of time. Where two
// spans overlap (a reported incident over a detected one) the later start
// wins. It is created again at every migrate (CREATE OR REPLACE): the local
// ClickHouse source runs its query as the configured user, so a changed
// password is taken up.
const incidentSpansDict = `
CREATE OR REPLACE DICTIONARY {{.DB}}.incident_spans{{.OnCluster}} (
	Key        UInt64,
	StartNs    Int64,
	EndNs      Int64,
	IncidentId String
)
PRIMARY KEY Key
SOURCE(CLICKHOUSE(QUERY 'SELECT cityHash64(Service, Environment) AS Key, toUnixTimestamp64Nano(StartedAt) AS StartNs, ifNull(toUnixTimestamp64Nano(ResolvedAt), 9223372036854775807) - 1 AS EndNs, IncidentId FROM {{.DB}}.incidents FINAL'{{dictCredentials}}))
LIFETIME(MIN 5 MAX 10)
LAYOUT(RANGE_HASHED(range_lookup_strategy 'max'))
RANGE(MIN StartNs MAX EndNs)`

// incidentIDAlias turns each telemetry table's IncidentId into an ALIAS
// column that looks the row up in incident_spans, on the tables that store
// rows and on the Distributed tables over them.
func incidentIDAlias() []string {
	var out []string
	for _, table := range telemetryTables {
		ts := "TimeUnix"
		if table == "otel_logs" {
			ts = "Timestamp"
		}
		alter := `
ALTER TABLE {{.DB}}.%s{{.OnCluster}}
	DROP COLUMN IF EXISTS IncidentId,
	ADD COLUMN IncidentId String ALIAS dictGetOrDefault('{{.DictName}}', 'IncidentId',
		cityHash64(ServiceName, if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])),
		toUnixTimestamp64Nano(` + ts + `), '')`
		out = append(out, fmt.Sprintf(alter, `{{local "`+table+`"}}`),
			`{{if ne (local "`+table+`") "`+table+`"}}`+fmt.Sprintf(alter, table)+`{{end}}`)
	}
	return out
}

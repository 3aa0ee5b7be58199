package clickhouse

// The read side of the web UI (pipeline/ui). Every query here is a Query:
// SQL with named server-side parameters ({name:Type}), whose values travel
// beside the statement and are bound by ClickHouse itself, so nothing a
// visitor types ever becomes SQL text. The UI shows each figure's query
// with the values written in as literals (Query.Literal), so a reader can
// paste it into clickhouse-client and get the same numbers.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/faultline-dev/faultline/processors/dora"
)

// ErrNotFound is returned for an id that names no row.
var ErrNotFound = errors.New("not found")

// Query is one statement with its named parameters.
type Query struct {
	SQL    string
	Params []Param
}

// Param is a named parameter's value, in ClickHouse's text format for the
// type the SQL declares.
type Param struct {
	Name, Value string
}

var placeholderRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}`)

// Literal returns the SQL with each parameter written in as a literal of
// its declared type: for copying, never for running (Run binds).
func (q Query) Literal() string {
	vals := map[string]string{}
	for _, p := range q.Params {
		vals[p.Name] = p.Value
	}
	return placeholderRE.ReplaceAllStringFunc(q.SQL, func(m string) string {
		sub := placeholderRE.FindStringSubmatch(m)
		v, ok := vals[sub[1]]
		if !ok {
			return m
		}
		typ := strings.TrimSpace(sub[2])
		switch {
		case typ == "String":
			return quoteString(strings.ReplaceAll(v, `\\`, `\`)) // undo stringParam
		case strings.HasPrefix(typ, "UInt"), strings.HasPrefix(typ, "Int"), strings.HasPrefix(typ, "Float"):
			return v
		case strings.HasPrefix(typ, "Array("):
			return v // built by stringArray: already a literal
		}
		return "CAST(" + quoteString(v) + " AS " + typ + ")"
	})
}

// stringParam is a String parameter's value: ClickHouse reads parameter
// values in its escaped text format, where a backslash starts an escape.
func stringParam(name, v string) Param {
	return Param{Name: name, Value: strings.ReplaceAll(v, `\`, `\\`)}
}

// stringArray is an Array(String) parameter's value.
func stringArray(name string, vs []string) Param {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quoteString(v)
	}
	return Param{Name: name, Value: "[" + strings.Join(q, ",") + "]"}
}

// timeParam is a point in time, read by the SQL as
// toDateTime64({name:String}, 9, 'UTC'), so the server's time zone does not
// matter and the literal form stays readable.
func timeParam(name string, t time.Time) Param {
	return Param{Name: name, Value: t.UTC().Format("2006-01-02 15:04:05.000000000")}
}

func (q Query) params() clickhouse.Parameters {
	ps := clickhouse.Parameters{}
	for _, p := range q.Params {
		ps[p.Name] = p.Value
	}
	return ps
}

// readSettings keep the UI's reads from ever writing: readonly=2 refuses
// any statement that changes data or schema while still letting a query
// carry settings.
var readSettings = clickhouse.Settings{"readonly": 2}

// Run executes the query with its parameters bound by the server.
func (q Query) Run(ctx context.Context, conn driver.Conn) (driver.Rows, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithParameters(q.params()), clickhouse.WithSettings(readSettings))
	rows, err := conn.Query(ctx, q.SQL)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// Reader runs the UI's queries on faultline's database.
//
// A join or IN over a subquery on another table is GLOBAL: on a cluster both
// sides are Distributed tables, which ClickHouse refuses to nest
// (distributed_product_mode 'deny', code 288). GLOBAL runs the subquery
// once and sends its result to every shard, which is right whichever shard
// each side's rows are on; on one server it changes nothing.
type Reader struct {
	conn driver.Conn
	db   string // a validated identifier (Config.Validate)
}

// NewReader reads database through conn. The database name must be a plain
// identifier, as Config.Validate requires.
func NewReader(conn driver.Conn, database string) (*Reader, error) {
	if !identRE.MatchString(database) {
		return nil, fmt.Errorf("ui reader: database %q is not a plain identifier", database)
	}
	return &Reader{conn: conn, db: database}, nil
}

// query builds a Query, qualifying the table names written as "db." with
// the database, so the copied SQL runs from any session.
func (r *Reader) query(sql string, params ...Param) Query {
	return Query{SQL: strings.TrimSpace(strings.ReplaceAll(sql, "db.", r.db+".")), Params: params}
}

// envExpr is a telemetry row's environment, as workers read it: the
// deployment.environment.name resource attribute, else the older
// deployment.environment.
const envExpr = `if(ResourceAttributes['deployment.environment.name'] != '', ResourceAttributes['deployment.environment.name'], ResourceAttributes['deployment.environment'])`

// Incident is an incident as the UI shows it.
type Incident struct {
	ID, Service, Environment, Title, Severity, Source string
	Signal, DetectionReason                           string
	StartedAt                                         time.Time
	ResolvedAt                                        *time.Time
	TimeToRestoreSeconds                              *float64
	SuspectDeployID, SuspectVersion                   string
	Confidence                                        float32
	RestoredByDeployID                                string
	// FirstRecordedAt is when faultline first wrote the incident (the
	// oldest row version still unmerged, else the latest): wall-clock
	// time, close to the moment of detection on live data.
	FirstRecordedAt time.Time
}

// Open reports whether the incident is unresolved.
func (i Incident) Open() bool { return i.ResolvedAt == nil }

const incidentColumns = `IncidentId, Service, Environment, Title, Severity, Source, Signal, DetectionReason, StartedAt, ResolvedAt,
	TimeToRestoreSeconds, SuspectDeployId, SuspectVersion, Confidence, RestoredByDeployId`

func scanIncident(rows driver.Rows, withFirst bool) (Incident, error) {
	var i Incident
	dest := []any{&i.ID, &i.Service, &i.Environment, &i.Title, &i.Severity, &i.Source, &i.Signal, &i.DetectionReason,
		&i.StartedAt, &i.ResolvedAt, &i.TimeToRestoreSeconds, &i.SuspectDeployID, &i.SuspectVersion, &i.Confidence, &i.RestoredByDeployID}
	if withFirst {
		dest = append(dest, &i.FirstRecordedAt)
	}
	err := rows.Scan(dest...)
	return i, err
}

// IncidentFilter narrows the incident list; empty strings match all.
type IncidentFilter struct {
	Environment, Service string
	Limit                int
}

// IncidentsQuery lists incidents, open ones first, then by start, newest
// first.
func (r *Reader) IncidentsQuery(f IncidentFilter) Query {
	limit := f.Limit
	if limit <= 0 {
		limit = 200
	}
	return r.query(`
SELECT `+incidentColumns+`
FROM db.incidents FINAL
WHERE ({environment:String} = '' OR Environment = {environment:String})
  AND ({service:String} = '' OR Service = {service:String})
ORDER BY ResolvedAt IS NOT NULL, StartedAt DESC, IncidentId
LIMIT {limit:UInt32}`,
		stringParam("environment", f.Environment), stringParam("service", f.Service),
		Param{Name: "limit", Value: strconv.Itoa(limit)})
}

// Incidents runs IncidentsQuery.
func (r *Reader) Incidents(ctx context.Context, f IncidentFilter) ([]Incident, Query, error) {
	q := r.IncidentsQuery(f)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, q, fmt.Errorf("incidents query: %w", err)
	}
	defer rows.Close()
	var out []Incident
	for rows.Next() {
		i, err := scanIncident(rows, false)
		if err != nil {
			return nil, q, fmt.Errorf("incidents row: %w", err)
		}
		out = append(out, i)
	}
	if err := rows.Err(); err != nil {
		return nil, q, fmt.Errorf("incidents rows: %w", err)
	}
	return out, q, nil
}

// ServiceKey is an environment and service pair.
type ServiceKey struct{ Environment, Service string }

// ServiceKeys lists every environment and service that has a deploy or an
// incident, for the UI's filters.
func (r *Reader) ServiceKeys(ctx context.Context) ([]ServiceKey, error) {
	q := r.query(`
SELECT Environment, Service FROM (
	SELECT Environment, Service FROM db.incidents
	UNION ALL
	SELECT Environment, Service FROM db.deploys
)
GROUP BY Environment, Service
ORDER BY Environment, Service`)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, fmt.Errorf("service keys query: %w", err)
	}
	defer rows.Close()
	var out []ServiceKey
	for rows.Next() {
		var k ServiceKey
		if err := rows.Scan(&k.Environment, &k.Service); err != nil {
			return nil, fmt.Errorf("service keys row: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// IncidentQuery reads one incident.
func (r *Reader) IncidentQuery(id string) Query {
	return r.query(`
SELECT `+incidentColumns+`,
	(SELECT min(UpdatedAt) FROM db.incidents WHERE IncidentId = {id:String}) AS FirstRecordedAt
FROM db.incidents FINAL
WHERE IncidentId = {id:String}`, stringParam("id", id))
}

// Incident reads one incident; ErrNotFound when there is none.
func (r *Reader) Incident(ctx context.Context, id string) (Incident, Query, error) {
	q := r.IncidentQuery(id)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return Incident{}, q, fmt.Errorf("incident query: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Incident{}, q, fmt.Errorf("incident rows: %w", err)
		}
		return Incident{}, q, ErrNotFound
	}
	i, err := scanIncident(rows, true)
	if err != nil {
		return Incident{}, q, fmt.Errorf("incident row: %w", err)
	}
	return i, q, nil
}

// Suspect is one ranked candidate deploy of an incident.
type Suspect struct {
	DeployID, Service, Environment, Version, Reason string
	Rank                                            uint16
	Score, Confidence                               float32
	DeployedAt                                      *time.Time // nil when the deploy row is gone
}

// SuspectsQuery reads an incident's suspects, best first.
func (r *Reader) SuspectsQuery(id string) Query {
	return r.query(`
SELECT s.Rank, s.DeployId, s.Service, s.Environment, s.Version, s.Score, s.Confidence, s.Reason, d.DeployedAt
FROM db.incident_suspects AS s FINAL
GLOBAL LEFT JOIN (SELECT DeployId, toNullable(DeployedAt) AS DeployedAt FROM db.deploys FINAL) AS d ON d.DeployId = s.DeployId
WHERE s.IncidentId = {id:String}
ORDER BY s.Rank, s.DeployId`, stringParam("id", id))
}

// Suspects runs SuspectsQuery.
func (r *Reader) Suspects(ctx context.Context, id string) ([]Suspect, Query, error) {
	q := r.SuspectsQuery(id)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, q, fmt.Errorf("suspects query: %w", err)
	}
	defer rows.Close()
	var out []Suspect
	for rows.Next() {
		var s Suspect
		if err := rows.Scan(&s.Rank, &s.DeployID, &s.Service, &s.Environment, &s.Version, &s.Score, &s.Confidence, &s.Reason, &s.DeployedAt); err != nil {
			return nil, q, fmt.Errorf("suspects row: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, q, fmt.Errorf("suspects rows: %w", err)
	}
	return out, q, nil
}

// Window is a service in an environment over a time range [From, To).
type Window struct {
	Service, Environment string
	From, To             time.Time
}

func (w Window) params() []Param {
	return []Param{stringParam("service", w.Service), stringParam("environment", w.Environment),
		timeParam("from", w.From), timeParam("to", w.To)}
}

// LogMinute is one minute of one service.version's log records.
type LogMinute struct {
	Minute          time.Time
	Version         string
	Records, Errors uint64
}

// LogMinutesQuery counts log records and errors (SeverityNumber >= 17, as
// detection counts them) per minute and service.version.
func (r *Reader) LogMinutesQuery(w Window) Query {
	return r.query(`
SELECT toStartOfMinute(Timestamp) AS Minute, ResourceAttributes['service.version'] AS Version,
	count() AS Records, countIf(SeverityNumber >= 17) AS Errors
FROM db.otel_logs
WHERE ServiceName = {service:String} AND `+envExpr+` = {environment:String}
  AND Timestamp >= toDateTime64({from:String}, 9, 'UTC') AND Timestamp < toDateTime64({to:String}, 9, 'UTC')
GROUP BY Minute, Version
ORDER BY Minute, Version`, w.params()...)
}

// LogMinutes runs LogMinutesQuery.
func (r *Reader) LogMinutes(ctx context.Context, w Window) ([]LogMinute, Query, error) {
	q := r.LogMinutesQuery(w)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, q, fmt.Errorf("log minutes query: %w", err)
	}
	defer rows.Close()
	var out []LogMinute
	for rows.Next() {
		var m LogMinute
		if err := rows.Scan(&m.Minute, &m.Version, &m.Records, &m.Errors); err != nil {
			return nil, q, fmt.Errorf("log minutes row: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, q, fmt.Errorf("log minutes rows: %w", err)
	}
	return out, q, nil
}

// RequestMinute is one minute of one service.version's HTTP requests, from
// http.server.request.duration histograms.
type RequestMinute struct {
	Minute           time.Time
	Version          string
	Requests, Failed uint64   // Failed: status code >= 500
	P95Seconds       *float64 // nil without requests or buckets
}

// RequestMinutesQuery counts requests and 5xx per minute and
// service.version, and estimates the p95 latency from the bucket counts.
// Cumulative points become deltas as detection makes them: the count
// between two points of a series belongs to the later point's minute; a
// series' first point is only a baseline; a restart (start time changed,
// count went down) counts its own total when it started after the previous
// point. Points from an hour before the window are read to have the
// baselines. The p95 interpolates linearly within the bucket that holds it
// (the overflow bucket reads as its lower bound).
func (r *Reader) RequestMinutesQuery(w Window) Query {
	return r.query(`
SELECT Minute, Version, Requests, Failed,
	if(Requests = 0 OR empty(Buckets), NULL,
		lower + (upper - lower) * (target - below) / Buckets[i]) AS P95Seconds
FROM (
	SELECT Minute, Version, Requests, Failed, Buckets, Bounds,
		arrayCumSum(Buckets) AS cum, cum[-1] * 0.95 AS target,
		arrayFirstIndex(c -> c >= target AND c > 0, cum) AS i,
		if(i <= 1, 0, Bounds[i - 1]) AS lower,
		if(i <= length(Bounds), Bounds[i], Bounds[-1]) AS upper,
		if(i <= 1, 0, cum[i - 1]) AS below
	FROM (
		SELECT toStartOfMinute(TimeUnix) AS Minute, Version,
			sum(n) AS Requests, sumIf(n, failed) AS Failed,
			sumForEach(b) AS Buckets, argMax(ExplicitBounds, length(ExplicitBounds)) AS Bounds
		FROM (
			SELECT TimeUnix, ExplicitBounds, ResourceAttributes['service.version'] AS Version,
				toUInt16OrZero(Attributes['http.response.status_code']) >= 500 AS failed,
				lagInFrame(TimeUnix, 1, toDateTime64(0, 9)) OVER w AS prevTime,
				lagInFrame(StartTimeUnix, 1, toDateTime64(0, 9)) OVER w AS prevStart,
				lagInFrame(Count, 1, 0) OVER w AS prevCount,
				lagInFrame(BucketCounts, 1, []) OVER w AS prevBuckets,
				multiIf(AggregationTemporality = 1, 'delta',
					prevTime = toDateTime64(0, 9) OR TimeUnix <= prevTime, 'none',
					StartTimeUnix != prevStart OR Count < prevCount, if(StartTimeUnix > prevTime, 'delta', 'none'),
					'diff') AS how,
				multiIf(how = 'delta', Count, how = 'diff', toUInt64(Count - prevCount), toUInt64(0)) AS n,
				multiIf(how = 'delta', BucketCounts,
					how = 'diff' AND length(BucketCounts) = length(prevBuckets)
						AND arrayAll((c, p) -> c >= p, BucketCounts, prevBuckets),
						arrayMap((c, p) -> toUInt64(c - p), BucketCounts, prevBuckets),
					CAST([] AS Array(UInt64))) AS b
			FROM db.otel_metrics_histogram
			WHERE MetricName = 'http.server.request.duration'
			  AND ServiceName = {service:String} AND `+envExpr+` = {environment:String}
			  AND TimeUnix >= toDateTime64({from:String}, 9, 'UTC') - INTERVAL 1 HOUR
			  AND TimeUnix < toDateTime64({to:String}, 9, 'UTC')
			WINDOW w AS (PARTITION BY ResourceAttributes, ScopeName, Attributes ORDER BY TimeUnix
				ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
		)
		WHERE TimeUnix >= toDateTime64({from:String}, 9, 'UTC')
		GROUP BY Minute, Version
	)
)
ORDER BY Minute, Version`, w.params()...)
}

// RequestMinutes runs RequestMinutesQuery.
func (r *Reader) RequestMinutes(ctx context.Context, w Window) ([]RequestMinute, Query, error) {
	q := r.RequestMinutesQuery(w)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, q, fmt.Errorf("request minutes query: %w", err)
	}
	defer rows.Close()
	var out []RequestMinute
	for rows.Next() {
		var m RequestMinute
		if err := rows.Scan(&m.Minute, &m.Version, &m.Requests, &m.Failed, &m.P95Seconds); err != nil {
			return nil, q, fmt.Errorf("request minutes row: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, q, fmt.Errorf("request minutes rows: %w", err)
	}
	return out, q, nil
}

// Deploy is a deploy as the UI shows it.
type Deploy struct {
	ID, Service, Environment, Version, Type, Status string
	DeployedAt                                      time.Time
	CommitSha                                       string
	FirstCommitAt                                   *time.Time
	LeadTimeSeconds                                 *float64
	Author, URL                                     string
	Attributes                                      map[string]string
	ChangeFailure                                   bool
	FailureReason, RolledBackBy                     string
}

const deployColumns = `DeployId, Service, Environment, Version, Type, Status, DeployedAt, CommitSha, FirstCommitAt, LeadTimeSeconds,
	Author, Url, Attributes, ChangeFailure, FailureReason, RolledBackBy`

func scanDeploys(rows driver.Rows) ([]Deploy, error) {
	defer rows.Close()
	var out []Deploy
	for rows.Next() {
		var d Deploy
		if err := rows.Scan(&d.ID, &d.Service, &d.Environment, &d.Version, &d.Type, &d.Status, &d.DeployedAt, &d.CommitSha,
			&d.FirstCommitAt, &d.LeadTimeSeconds, &d.Author, &d.URL, &d.Attributes, &d.ChangeFailure, &d.FailureReason, &d.RolledBackBy); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeploysQuery lists the deploys of the window's service and environment
// in the window, and the deploys named in ids (suspects from other
// services, the deploy that restored service) wherever they fall.
func (r *Reader) DeploysQuery(w Window, ids []string) Query {
	return r.query(`
SELECT `+deployColumns+`
FROM db.deploys FINAL
WHERE (Service = {service:String} AND Environment = {environment:String}
       AND DeployedAt >= toDateTime64({from:String}, 9, 'UTC') AND DeployedAt < toDateTime64({to:String}, 9, 'UTC'))
   OR has({ids:Array(String)}, DeployId)
ORDER BY DeployedAt, DeployId`, append(w.params(), stringArray("ids", ids))...)
}

// Deploys runs DeploysQuery.
func (r *Reader) Deploys(ctx context.Context, w Window, ids []string) ([]Deploy, Query, error) {
	q := r.DeploysQuery(w, ids)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, q, fmt.Errorf("deploys query: %w", err)
	}
	ds, err := scanDeploys(rows)
	if err != nil {
		return nil, q, fmt.Errorf("deploys rows: %w", err)
	}
	return ds, q, nil
}

// DeployQuery reads one deploy and the one live before it in its service
// and environment (what it replaced), in that order.
func (r *Reader) DeployQuery(id string) Query {
	return r.query(`
WITH this AS (SELECT Service, Environment, DeployedAt FROM db.deploys FINAL WHERE DeployId = {id:String} LIMIT 1)
SELECT `+deployColumns+` FROM (
	SELECT *, 0 AS ord FROM db.deploys FINAL WHERE DeployId = {id:String}
	UNION ALL
	SELECT * FROM (
		SELECT *, 1 AS ord FROM db.deploys FINAL
		WHERE (Service, Environment) GLOBAL IN (SELECT Service, Environment FROM this)
		  AND DeployedAt < (SELECT DeployedAt FROM this) AND Status = 'succeeded' AND DeployId != {id:String}
		ORDER BY DeployedAt DESC LIMIT 1
	)
)
ORDER BY ord`, stringParam("id", id))
}

// Deploy reads one deploy and the deploy it replaced (nil for the first);
// ErrNotFound when there is none.
func (r *Reader) Deploy(ctx context.Context, id string) (Deploy, *Deploy, Query, error) {
	q := r.DeployQuery(id)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return Deploy{}, nil, q, fmt.Errorf("deploy query: %w", err)
	}
	ds, err := scanDeploys(rows)
	if err != nil {
		return Deploy{}, nil, q, fmt.Errorf("deploy rows: %w", err)
	}
	if len(ds) == 0 || ds[0].ID != id {
		return Deploy{}, nil, q, ErrNotFound
	}
	var prev *Deploy
	if len(ds) > 1 {
		prev = &ds[1]
	}
	return ds[0], prev, q, nil
}

// DeployIncident is an incident that names a deploy as a suspect, or that
// the deploy restored.
type DeployIncident struct {
	ID, Signal string
	StartedAt  time.Time
	ResolvedAt *time.Time
	Rank       uint16 // 0: not a suspect (the deploy restored it)
	Score      float32
	Confidence float32
	Reason     string
	Restored   bool
}

// DeployIncidentsQuery lists the incidents a deploy is a suspect of, and
// those it restored.
func (r *Reader) DeployIncidentsQuery(id string) Query {
	return r.query(`
SELECT i.IncidentId, i.Signal, i.StartedAt, i.ResolvedAt, ifNull(s.Rank, 0), ifNull(s.Score, 0), i.Confidence,
	ifNull(s.Reason, ''), i.RestoredByDeployId = {id:String} AS Restored
FROM db.incidents AS i FINAL
GLOBAL LEFT JOIN (SELECT IncidentId, toNullable(Rank) AS Rank, toNullable(Score) AS Score, toNullable(Reason) AS Reason
                  FROM db.incident_suspects FINAL WHERE DeployId = {id:String}) AS s ON s.IncidentId = i.IncidentId
WHERE s.IncidentId != '' OR i.RestoredByDeployId = {id:String}
ORDER BY i.StartedAt, i.IncidentId`, stringParam("id", id))
}

// DeployIncidents runs DeployIncidentsQuery.
func (r *Reader) DeployIncidents(ctx context.Context, id string) ([]DeployIncident, Query, error) {
	q := r.DeployIncidentsQuery(id)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, q, fmt.Errorf("deploy incidents query: %w", err)
	}
	defer rows.Close()
	var out []DeployIncident
	for rows.Next() {
		var d DeployIncident
		if err := rows.Scan(&d.ID, &d.Signal, &d.StartedAt, &d.ResolvedAt, &d.Rank, &d.Score, &d.Confidence, &d.Reason, &d.Restored); err != nil {
			return nil, q, fmt.Errorf("deploy incidents row: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, q, fmt.Errorf("deploy incidents rows: %w", err)
	}
	return out, q, nil
}

// DoraQuery is the four keys per environment and service over a window,
// the query Dora runs.
func (r *Reader) DoraQuery(f DoraFilter) Query {
	return r.query(doraSQL, doraParams(f)...)
}

func doraParams(f DoraFilter) []Param {
	since := f.Since
	if since.IsZero() {
		since = time.Unix(0, 0)
	}
	return []Param{stringParam("environment", f.Environment), stringParam("service", f.Service),
		{Name: "since", Value: since.UTC().Format(time.DateOnly)}}
}

// Dora runs DoraQuery.
func (r *Reader) Dora(ctx context.Context, f DoraFilter) ([]dora.Summary, Query, error) {
	q := r.DoraQuery(f)
	out, err := runDora(ctx, r.conn, q)
	return out, q, err
}

// DoraWeek is one ISO week (from its Monday) of one environment and
// service.
type DoraWeek struct {
	Week                        time.Time
	Environment, Service        string
	Deployments, ChangeFailures uint64
	Incidents                   uint64
	MedianLeadTimeSeconds       *float64
	MedianTimeToRestoreSeconds  *float64
}

// DoraWeeksQuery is the weekly trend of the four keys' inputs.
func (r *Reader) DoraWeeksQuery(f DoraFilter) Query {
	return r.query(`
SELECT toMonday(Day) AS Week, Environment, Service,
	sum(Deployments) AS D, sum(ChangeFailures) AS F, sum(Incidents) AS I,
	arrayFlatten(groupArray(LeadTimeSeconds)) AS lts,
	if(empty(lts), NULL, arrayReduce('quantileExactInclusive(0.5)', lts)) AS MedianLeadTimeSeconds,
	arrayFlatten(groupArray(TimeToRestoreSeconds)) AS ttr,
	if(empty(ttr), NULL, arrayReduce('quantileExactInclusive(0.5)', ttr)) AS MedianTimeToRestoreSeconds
FROM db.dora_daily
WHERE ({environment:String} = '' OR Environment = {environment:String})
  AND ({service:String} = '' OR Service = {service:String})
  AND Day >= toDate({since:String})
GROUP BY Week, Environment, Service
ORDER BY Environment, Service, Week`, doraParams(f)...)
}

// DoraWeeks runs DoraWeeksQuery.
func (r *Reader) DoraWeeks(ctx context.Context, f DoraFilter) ([]DoraWeek, Query, error) {
	q := r.DoraWeeksQuery(f)
	rows, err := q.Run(ctx, r.conn)
	if err != nil {
		return nil, q, fmt.Errorf("dora weeks query: %w", err)
	}
	defer rows.Close()
	var out []DoraWeek
	for rows.Next() {
		var w DoraWeek
		var lts, ttr []float64
		if err := rows.Scan(&w.Week, &w.Environment, &w.Service, &w.Deployments, &w.ChangeFailures, &w.Incidents,
			&lts, &w.MedianLeadTimeSeconds, &ttr, &w.MedianTimeToRestoreSeconds); err != nil {
			return nil, q, fmt.Errorf("dora weeks row: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, q, fmt.Errorf("dora weeks rows: %w", err)
	}
	return out, q, nil
}

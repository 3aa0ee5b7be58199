package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// oddID is an id made of the characters that break SQL built by hand.
const oddID = `it's \ a {brace} ? id`

// uiFixture writes a small, hand-checked history: checkout's bad deploy,
// its incident (two row versions), suspects, rollback; logs per version;
// ledger's request histograms with a counter reset and a delta series.
func uiFixture(t *testing.T, ctx context.Context, conn driver.Conn) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO deploys (DeployId, Service, Environment, Version, Type, Status, DeployedAt, CommitSha, FirstCommitAt, LeadTimeSeconds, Author, Url, Attributes, ChangeFailure, FailureReason, RolledBackBy, UpdatedAt) VALUES
			('d0','checkout','production','v1.0.0','deploy','succeeded','2026-11-01 09:00:00','aaa111','2026-11-01 08:00:00',3600,'ci','https://ci/0',map('k','v'),false,'','','2026-11-01 09:00:00'),
			('d1','checkout','production','v1.1.0','deploy','succeeded','2026-11-01 10:10:00','bbb222','2026-11-01 09:10:00',3600,'ci','https://ci/1',map(),false,'','','2026-11-01 10:10:00'),
			('d1','checkout','production','v1.1.0','deploy','succeeded','2026-11-01 10:10:00','bbb222','2026-11-01 09:10:00',3600,'ci','https://ci/1',map(),true,'top suspect of incident i1, confidence 0.99','d2','2026-11-01 10:30:00'),
			('d2','checkout','production','v1.0.0','rollback','succeeded','2026-11-01 10:30:00','aaa111',NULL,NULL,'ci','',map(),false,'','','2026-11-01 10:30:00'),
			('d3','payments','production','v3','deploy','succeeded','2026-11-01 10:05:00','ccc333',NULL,NULL,'ci','',map(),false,'','','2026-11-01 10:05:00')`,
		`INSERT INTO incidents (IncidentId, Service, Environment, Title, Severity, Source, Signal, DetectionReason, StartedAt, ResolvedAt, TimeToRestoreSeconds, SuspectDeployId, SuspectVersion, Confidence, RestoredByDeployId, UpdatedAt) VALUES
			('i1','checkout','production','errors','major','detected','errors','30% errors vs 0.5%','2026-11-01 10:12:00',NULL,NULL,'d1','v1.1.0',0.99,'','2026-11-01 10:14:00'),
			('i1','checkout','production','errors','major','detected','errors','30% errors vs 0.5%','2026-11-01 10:12:00','2026-11-01 10:30:00',1080,'d1','v1.1.0',0.99,'d2','2026-11-01 10:35:00'),
			('i2','search','staging','slow','minor','detected','latency','p95 3x','2026-11-01 11:00:00',NULL,NULL,'','',0,'','2026-11-01 11:02:00'),
			('` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(oddID) + `','checkout','production','odd','minor','api','explicit','','2026-11-01 09:30:00','2026-11-01 09:40:00',600,'','',0,'','2026-11-01 09:40:00')`,
		`INSERT INTO incident_suspects (IncidentId, DeployId, Rank, Score, Confidence, Reason, Service, Environment, Version, UpdatedAt) VALUES
			('i1','d1',1,0.99,0.99,'went live 2m before','checkout','production','v1.1.0','2026-11-01 10:14:00'),
			('i1','d3',2,0.2,0.99,'other service','payments','production','v3','2026-11-01 10:14:00')`,
		// checkout: 10 records a minute of v1.0.0 at 10:09, 10 of v1.1.0
		// with 3 errors at 10:12; staging's rows must not count.
		`INSERT INTO otel_logs (Timestamp, ServiceName, SeverityNumber, ResourceAttributes)
			SELECT toDateTime64('2026-11-01 10:09:00', 9, 'UTC') + toIntervalSecond(number), 'checkout', 9,
				map('service.version','v1.0.0','deployment.environment.name','production') FROM numbers(10)`,
		`INSERT INTO otel_logs (Timestamp, ServiceName, SeverityNumber, ResourceAttributes)
			SELECT toDateTime64('2026-11-01 10:12:00', 9, 'UTC') + toIntervalSecond(number), 'checkout', if(number < 3, 17, 9),
				map('service.version','v1.1.0','deployment.environment','production') FROM numbers(10)`,
		`INSERT INTO otel_logs (Timestamp, ServiceName, SeverityNumber, ResourceAttributes)
			SELECT toDateTime64('2026-11-01 10:12:00', 9, 'UTC'), 'checkout', 17,
				map('service.version','v1.1.0','deployment.environment.name','staging') FROM numbers(5)`,
		// ledger: cumulative 200 and 503 series restarting at 10:02:30,
		// and a delta series of v2.
		`INSERT INTO otel_metrics_histogram (ServiceName, MetricName, ResourceAttributes, Attributes, StartTimeUnix, TimeUnix, Count, BucketCounts, ExplicitBounds, AggregationTemporality) VALUES
			('ledger','http.server.request.duration',map('service.version','v1','deployment.environment.name','production'),map('http.response.status_code','200'),'2026-11-01 09:00:00','2026-11-01 10:00:59',100,[50,50,0,0],[0.1,0.5,1],2),
			('ledger','http.server.request.duration',map('service.version','v1','deployment.environment.name','production'),map('http.response.status_code','200'),'2026-11-01 09:00:00','2026-11-01 10:01:59',160,[80,80,0,0],[0.1,0.5,1],2),
			('ledger','http.server.request.duration',map('service.version','v1','deployment.environment.name','production'),map('http.response.status_code','200'),'2026-11-01 10:02:30','2026-11-01 10:02:59',20,[20,0,0,0],[0.1,0.5,1],2),
			('ledger','http.server.request.duration',map('service.version','v1','deployment.environment.name','production'),map('http.response.status_code','503'),'2026-11-01 09:00:00','2026-11-01 10:00:59',0,[0,0,0,0],[0.1,0.5,1],2),
			('ledger','http.server.request.duration',map('service.version','v1','deployment.environment.name','production'),map('http.response.status_code','503'),'2026-11-01 09:00:00','2026-11-01 10:01:59',10,[0,0,10,0],[0.1,0.5,1],2),
			('ledger','http.server.request.duration',map('service.version','v1','deployment.environment.name','production'),map('http.response.status_code','503'),'2026-11-01 10:02:30','2026-11-01 10:02:59',5,[0,0,0,5],[0.1,0.5,1],2),
			('ledger','http.server.request.duration',map('service.version','v2','deployment.environment.name','production'),map('http.response.status_code','200'),'2026-11-01 10:01:00','2026-11-01 10:01:30',7,[7,0,0,0],[0.1,0.5,1],1)`,
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
}

// TestUIQueries reads the fixture through every UI query, on one server and
// on a cluster's Distributed tables, and checks each query's literal form
// gives the same rows as the bound one.
func TestUIQueries(t *testing.T) { everySchema(t, testUIQueries) }

func testUIQueries(t *testing.T, cfg clickhouse.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	uiFixture(t, ctx, conn)
	r, err := clickhouse.NewReader(conn, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	var queries []clickhouse.Query
	keep := func(t *testing.T, q clickhouse.Query, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, q.Literal())
		}
		queries = append(queries, q)
	}

	t.Run("incidents", func(t *testing.T) {
		for _, tc := range []struct {
			f    clickhouse.IncidentFilter
			want string
		}{
			{clickhouse.IncidentFilter{}, "i2 i1 " + oddID},
			{clickhouse.IncidentFilter{Environment: "production"}, "i1 " + oddID},
			{clickhouse.IncidentFilter{Service: "search"}, "i2"},
			{clickhouse.IncidentFilter{Service: "search", Environment: "production"}, ""},
			{clickhouse.IncidentFilter{Limit: 1}, "i2"},
		} {
			is, q, err := r.Incidents(ctx, tc.f)
			keep(t, q, err)
			var ids []string
			for _, i := range is {
				ids = append(ids, i.ID)
			}
			if got := strings.Join(ids, " "); got != tc.want {
				t.Errorf("%+v: %q, want %q (open first, then newest)", tc.f, got, tc.want)
			}
		}
	})

	t.Run("incident", func(t *testing.T) {
		i, q, err := r.Incident(ctx, "i1")
		keep(t, q, err)
		if i.ResolvedAt == nil || i.RestoredByDeployID != "d2" || i.SuspectVersion != "v1.1.0" || i.Signal != "errors" ||
			!i.FirstRecordedAt.Equal(time.Date(2026, 11, 1, 10, 14, 0, 0, time.UTC)) && !i.FirstRecordedAt.Equal(time.Date(2026, 11, 1, 10, 35, 0, 0, time.UTC)) {
			t.Errorf("i1 = %+v", i)
		}
		odd, q, err := r.Incident(ctx, oddID)
		keep(t, q, err)
		if odd.ID != oddID {
			t.Errorf("odd id read back as %q", odd.ID)
		}
		if _, _, err := r.Incident(ctx, "nope' OR 1=1 --"); !errors.Is(err, clickhouse.ErrNotFound) {
			t.Errorf("unknown id: %v, want ErrNotFound", err)
		}
		ss, q, err := r.Suspects(ctx, "i1")
		keep(t, q, err)
		if len(ss) != 2 || ss[0].DeployID != "d1" || ss[0].Rank != 1 || ss[1].DeployID != "d3" || ss[0].DeployedAt == nil {
			t.Errorf("suspects = %+v", ss)
		}
	})

	w := clickhouse.Window{Service: "checkout", Environment: "production",
		From: time.Date(2026, 11, 1, 9, 50, 0, 0, time.UTC), To: time.Date(2026, 11, 1, 10, 50, 0, 0, time.UTC)}
	t.Run("logs", func(t *testing.T) {
		ms, q, err := r.LogMinutes(ctx, w)
		keep(t, q, err)
		var got []string
		for _, m := range ms {
			got = append(got, fmt.Sprintf("%s %s %d/%d", m.Minute.UTC().Format("15:04"), m.Version, m.Errors, m.Records))
		}
		if want := "10:09 v1.0.0 0/10, 10:12 v1.1.0 3/10"; strings.Join(got, ", ") != want {
			t.Errorf("log minutes %q, want %q", strings.Join(got, ", "), want)
		}
	})

	t.Run("requests", func(t *testing.T) {
		lw := clickhouse.Window{Service: "ledger", Environment: "production", From: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 1, 10, 10, 0, 0, time.UTC)}
		ms, q, err := r.RequestMinutes(ctx, lw)
		keep(t, q, err)
		var got []string
		for _, m := range ms {
			p := "-"
			if m.P95Seconds != nil {
				p = fmt.Sprintf("%.3f", *m.P95Seconds)
			}
			got = append(got, fmt.Sprintf("%s %s %d/%d p95=%s", m.Minute.UTC().Format("15:04"), m.Version, m.Failed, m.Requests, p))
		}
		// 10:00 is each cumulative series' baseline; 10:01 adds 60 + 10
		// (buckets 30,30,10: p95 in (0.5, 1], 6.5 of its 10 in);
		// 10:02 is a restart after the previous point: its own 20 + 5.
		want := "10:00 v1 0/0 p95=-, 10:01 v1 10/70 p95=0.825, 10:01 v2 0/7 p95=0.095, 10:02 v1 5/25 p95=1.000"
		if strings.Join(got, ", ") != want {
			t.Errorf("request minutes\n%s\nwant\n%s", strings.Join(got, ", "), want)
		}
	})

	t.Run("deploys", func(t *testing.T) {
		ds, q, err := r.Deploys(ctx, w, []string{"d3"})
		keep(t, q, err)
		var got []string
		for _, d := range ds {
			got = append(got, d.ID+":"+d.Type)
		}
		if want := "d3:deploy d1:deploy d2:rollback"; strings.Join(got, " ") != want {
			t.Errorf("deploys %q, want %q", strings.Join(got, " "), want)
		}
		d, prev, q, err := r.Deploy(ctx, "d1")
		keep(t, q, err)
		if !d.ChangeFailure || d.RolledBackBy != "d2" || d.LeadTimeSeconds == nil || *d.LeadTimeSeconds != 3600 || prev == nil || prev.ID != "d0" {
			t.Errorf("d1 = %+v, replaced %+v", d, prev)
		}
		if _, prev, _, err := r.Deploy(ctx, "d0"); err != nil || prev != nil {
			t.Errorf("d0: replaced %+v, %v; want none", prev, err)
		}
		if _, _, _, err := r.Deploy(ctx, "d9"); !errors.Is(err, clickhouse.ErrNotFound) {
			t.Errorf("unknown deploy: %v, want ErrNotFound", err)
		}
		for id, want := range map[string]string{"d1": "i1 rank=1 restored=false", "d2": "i1 rank=0 restored=true", "d3": "i1 rank=2 restored=false"} {
			is, q, err := r.DeployIncidents(ctx, id)
			keep(t, q, err)
			var got []string
			for _, i := range is {
				got = append(got, fmt.Sprintf("%s rank=%d restored=%v", i.ID, i.Rank, i.Restored))
			}
			if strings.Join(got, "; ") != want {
				t.Errorf("incidents of %s: %q, want %q", id, strings.Join(got, "; "), want)
			}
		}
	})

	t.Run("dora", func(t *testing.T) {
		f := clickhouse.DoraFilter{Environment: "production", Since: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)}
		ss, q, err := r.Dora(ctx, f)
		keep(t, q, err)
		if len(ss) != 2 || ss[0].Service != "checkout" || ss[0].Deployments != 3 || ss[0].ChangeFailures != 1 {
			t.Errorf("dora = %+v", ss)
		}
		ws, q, err := r.DoraWeeks(ctx, f)
		keep(t, q, err)
		if len(ws) != 2 || !ws[0].Week.Equal(time.Date(2026, 10, 26, 0, 0, 0, 0, time.UTC)) || ws[0].Deployments != 3 || ws[0].Incidents != 2 {
			t.Errorf("dora weeks = %+v", ws)
		}
		if old, _ := clickhouse.Dora(ctx, conn, cfg.Database, f); len(old) != len(ss) {
			t.Errorf("Dora and Reader.Dora disagree: %+v vs %+v", old, ss)
		}
	})

	t.Run("literal", func(t *testing.T) {
		for _, q := range queries {
			bound := fingerprint(t, ctx, conn, q)
			lit := fingerprint(t, ctx, conn, clickhouse.Query{SQL: q.Literal()})
			if bound != lit {
				t.Errorf("literal SQL gives %s, bound gives %s:\n%s", lit, bound, q.Literal())
			}
			if strings.Contains(q.SQL, "checkout") || strings.Contains(q.SQL, "it's") {
				t.Errorf("a value reached the SQL text:\n%s", q.SQL)
			}
		}
	})

	t.Run("readonly", func(t *testing.T) {
		q := clickhouse.Query{SQL: "INSERT INTO deploys (DeployId) VALUES ({id:String})", Params: []clickhouse.Param{{Name: "id", Value: "x"}}}
		rows, err := q.Run(ctx, conn)
		if err == nil {
			rows.Close()
			t.Fatal("a UI query wrote")
		}
		if !strings.Contains(err.Error(), "readonly") {
			t.Fatalf("the insert failed for another reason than readonly: %v", err)
		}
	})
}

// fingerprint summarises a query's rows, order included.
func fingerprint(t *testing.T, ctx context.Context, conn driver.Conn, q clickhouse.Query) string {
	t.Helper()
	wrapped := q
	wrapped.SQL = "SELECT count(), toString(cityHash64(groupArray(cityHash64(toString(tuple(*)))))) FROM (" + q.SQL + ")"
	rows, err := wrapped.Run(ctx, conn)
	if err != nil {
		t.Fatalf("%v\n%s", err, wrapped.SQL)
	}
	defer rows.Close()
	var n uint64
	var h string
	for rows.Next() {
		if err := rows.Scan(&n, &h); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("%d rows #%s", n, h)
}

package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestDoraViews pins the view definitions of docs/dora.md on a small,
// hand-checked data set, including superseded row versions that only FINAL
// collapses.
func TestDoraViews(t *testing.T) { everySchema(t, testDoraViews) }

func testDoraViews(t *testing.T, cfg clickhouse.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	exec := func(q string) {
		t.Helper()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	// checkout/production: 4 succeeded deploys over 2 days (one rolled
	// back, one a rollback), one failed deploy that never went live.
	exec(`INSERT INTO deploys (DeployId, Service, Environment, Version, Type, Status, DeployedAt, LeadTimeSeconds, ChangeFailure, UpdatedAt) VALUES
		('d1','checkout','production','v1','deploy','succeeded','2026-11-01 10:00:00',3600,false,'2026-11-01 10:00:00'),
		('d2','checkout','production','v2','deploy','succeeded','2026-11-02 10:00:00',7200,false,'2026-11-02 10:00:00'),
		('d2','checkout','production','v2','deploy','succeeded','2026-11-02 10:00:00',7200,true,'2026-11-02 11:00:00'),
		('d3','checkout','production','v1','rollback','succeeded','2026-11-02 10:30:00',NULL,false,'2026-11-02 10:30:00'),
		('d4','checkout','production','v3','deploy','succeeded','2026-11-03 10:00:00',1800,false,'2026-11-03 10:00:00'),
		('d5','checkout','production','v4','deploy','failed','2026-11-03 12:00:00',60,false,'2026-11-03 12:00:00')`)
	exec(`INSERT INTO incidents (IncidentId, Service, Environment, Source, StartedAt, ResolvedAt, TimeToRestoreSeconds, UpdatedAt) VALUES
		('i1','checkout','production','detected','2026-11-02 10:10:00',NULL,NULL,'2026-11-02 10:10:00'),
		('i1','checkout','production','detected','2026-11-02 10:10:00','2026-11-02 10:40:00',1800,'2026-11-02 10:40:00'),
		('i2','checkout','production','api','2026-11-03 11:00:00','2026-11-03 12:00:00',3600,'2026-11-03 12:00:00'),
		('i3','search','staging','alertmanager','2026-11-03 11:00:00',NULL,NULL,'2026-11-03 11:00:00')`)
	if len(cfg.Addr) > 1 {
		// On several shards the views must combine every shard's FINAL:
		// the rows are spread over both.
		for _, table := range []string{"deploys", "incidents"} {
			var shards uint64
			if err := conn.QueryRow(ctx, "SELECT uniqExact(_shard_num) FROM "+table).Scan(&shards); err != nil {
				t.Fatal(err)
			}
			if shards != 2 {
				t.Fatalf("%s: rows on %d shards, want 2", table, shards)
			}
		}
	}

	type row struct {
		deployments, failures, incidents uint64
		cfr, mttr, lead                  *float64
		perDay                           float64
	}
	got := map[string]row{}
	rows, err := conn.Query(ctx, `SELECT Environment || '/' || Service, Deployments, ChangeFailures, ChangeFailureRate, Incidents,
		MedianTimeToRestoreSeconds, MedianLeadTimeSeconds, DeploysPerDay FROM dora_summary`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var r row
		if err := rows.Scan(&k, &r.deployments, &r.failures, &r.cfr, &r.incidents, &r.mttr, &r.lead, &r.perDay); err != nil {
			t.Fatal(err)
		}
		got[k] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	c := got["production/checkout"]
	if c.deployments != 4 || c.failures != 1 || c.incidents != 2 || c.cfr == nil || *c.cfr != 0.25 {
		t.Errorf("production/checkout = %+v, want 4 deployments, 1 failure, CFR 0.25, 2 incidents", c)
	}
	if c.mttr == nil || *c.mttr != 2700 { // median of 1800 and 3600
		t.Errorf("median time to restore = %v, want 2700", c.mttr)
	}
	if c.lead == nil || *c.lead != 3600 { // median of 3600, 7200, 1800 (the failed deploy's 60 does not count)
		t.Errorf("median lead time = %v, want 3600", c.lead)
	}
	if c.perDay != 2 { // 4 deployments over 2 days
		t.Errorf("deploys per day = %v, want 2", c.perDay)
	}
	s := got["staging/search"]
	if s.deployments != 0 || s.cfr != nil || s.incidents != 1 {
		t.Errorf("staging/search = %+v, want 0 deployments, NULL CFR, 1 incident", s)
	}

	var days, deploys, incidents uint64
	if err := conn.QueryRow(ctx, `SELECT count(), sum(Deployments), sum(Incidents) FROM dora_daily WHERE Environment = 'production'`).Scan(&days, &deploys, &incidents); err != nil {
		t.Fatal(err)
	}
	if days != 3 || deploys != 4 || incidents != 2 {
		t.Errorf("dora_daily production: %d days, %d deployments, %d incidents; want 3, 4, 2", days, deploys, incidents)
	}
}

// TestDoraWindow checks that the windowed query over dora_daily gives the
// same figures as dora_summary over all time, and narrows by day.
func TestDoraWindow(t *testing.T) {
	cfg := chtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	for _, q := range []string{
		`INSERT INTO deploys (DeployId, Service, Environment, Version, Type, Status, DeployedAt, LeadTimeSeconds, ChangeFailure, UpdatedAt) VALUES
		('d1','checkout','production','v1','deploy','succeeded','2026-11-01 10:00:00',3600,false,now64()),
		('d2','checkout','production','v2','deploy','succeeded','2026-11-02 10:00:00',7200,true,now64()),
		('d3','checkout','production','v3','deploy','succeeded','2026-11-03 10:00:00',1800,false,now64()),
		('d9','checkout','staging','v3','deploy','succeeded','2026-11-03 10:00:00',1800,false,now64())`,
		`INSERT INTO incidents (IncidentId, Service, Environment, Source, StartedAt, ResolvedAt, TimeToRestoreSeconds, UpdatedAt) VALUES
		('i1','checkout','production','detected','2026-11-02 10:10:00','2026-11-02 10:40:00',1800,now64()),
		('i2','checkout','production','api','2026-11-03 11:00:00','2026-11-03 12:00:00',3600,now64())`,
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	all, err := clickhouse.Dora(ctx, conn, cfg.Database, clickhouse.DoraFilter{Environment: "production"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Fatalf("got %d rows for production, want 1: %+v", len(all), all)
	}
	s := all[0]
	if s.Deployments != 3 || s.ChangeFailures != 1 || s.Incidents != 2 || *s.MedianTimeToRestoreSeconds != 2700 ||
		*s.MedianLeadTimeSeconds != 3600 || s.DeploysPerDay != 1.5 {
		t.Fatalf("all time: %+v", s)
	}
	if s.Bands.ChangeFailureRate != "low" || s.Bands.TimeToRestore != "elite" || s.Bands.DeploymentFrequency != "elite" || s.Bands.LeadTime != "elite" {
		t.Fatalf("bands: %+v", s.Bands)
	}
	recent, err := clickhouse.Dora(ctx, conn, cfg.Database, clickhouse.DoraFilter{Environment: "production", Since: time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 1 || recent[0].Deployments != 1 || recent[0].ChangeFailures != 0 || recent[0].Incidents != 1 || *recent[0].MedianTimeToRestoreSeconds != 3600 {
		t.Fatalf("since Nov 3: %+v", recent)
	}
}

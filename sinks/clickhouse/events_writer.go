package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/faultline-dev/faultline/processors/correlate"
)

// EventsWriter stores the state of deploys, incidents and suspects. Each
// write is a new version of a row (ReplacingMergeTree by UpdatedAt), so
// writing the same state again is harmless and readers see the latest with
// FINAL. Volumes are small (one row per change), so clickhouse-go's
// row-by-row batches are fine here.
type EventsWriter struct {
	conn    driver.Conn
	now     func() time.Time
	deletes []string // Retract's statements
}

// NewEventsWriter writes through conn (opened on faultline's database, as
// c describes it: on a cluster, deletes go to the shards' local tables).
func NewEventsWriter(conn driver.Conn, c Config) (*EventsWriter, error) {
	w := &EventsWriter{conn: conn, now: time.Now}
	for _, table := range []string{"incidents", "incident_suspects"} {
		q, err := c.render(`DELETE FROM {{.DB}}.{{local "` + table + `"}}{{.OnCluster}} WHERE has(?, IncidentId)`)
		if err != nil {
			return nil, fmt.Errorf("events writer: %w", err)
		}
		w.deletes = append(w.deletes, q)
	}
	return w, nil
}

// Write inserts the rows, one insert per table.
func (w *EventsWriter) Write(ctx context.Context, ds []correlate.DeployRow, is []correlate.IncidentRow, ss []correlate.SuspectRow) error {
	at := w.now().UTC()
	if len(ds) > 0 {
		b, err := w.conn.PrepareBatch(ctx, "INSERT INTO deploys (DeployId, Service, Environment, Version, Type, Status, DeployedAt, CommitSha, FirstCommitAt, LeadTimeSeconds, Author, Url, Attributes, ChangeFailure, FailureReason, RolledBackBy, UpdatedAt)")
		if err != nil {
			return fmt.Errorf("deploys: %w", err)
		}
		for _, d := range ds {
			attrs := d.Attributes
			if attrs == nil {
				attrs = map[string]string{}
			}
			if err := b.Append(d.DeployID, d.Service, d.Environment, d.Version, d.Type, d.Status, d.DeployedAt, d.CommitSha, d.FirstCommitAt, d.LeadTimeSeconds,
				d.Author, d.URL, attrs, d.ChangeFailure, d.FailureReason, d.RolledBackBy, at); err != nil {
				return fmt.Errorf("deploys: %w", err)
			}
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("deploys: %w", err)
		}
	}
	if len(is) > 0 {
		b, err := w.conn.PrepareBatch(ctx, "INSERT INTO incidents (IncidentId, Service, Environment, Title, Severity, Source, Signal, DetectionReason, StartedAt, ResolvedAt, TimeToRestoreSeconds, SuspectDeployId, SuspectVersion, Confidence, RestoredByDeployId, UpdatedAt)")
		if err != nil {
			return fmt.Errorf("incidents: %w", err)
		}
		for _, i := range is {
			if err := b.Append(i.IncidentID, i.Service, i.Environment, i.Title, i.Severity, i.Source, i.Signal, i.DetectionReason, i.StartedAt, i.ResolvedAt, i.TimeToRestoreSeconds,
				i.SuspectDeployID, i.SuspectVersion, i.Confidence, i.RestoredByDeployID, at); err != nil {
				return fmt.Errorf("incidents: %w", err)
			}
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("incidents: %w", err)
		}
	}
	if len(ss) > 0 {
		b, err := w.conn.PrepareBatch(ctx, "INSERT INTO incident_suspects (IncidentId, DeployId, Rank, Score, Confidence, Reason, Service, Environment, Version, UpdatedAt)")
		if err != nil {
			return fmt.Errorf("incident_suspects: %w", err)
		}
		for _, s := range ss {
			if err := b.Append(s.IncidentID, s.DeployID, s.Rank, s.Score, s.Confidence, s.Reason, s.Service, s.Environment, s.Version, at); err != nil {
				return fmt.Errorf("incident_suspects: %w", err)
			}
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("incident_suspects: %w", err)
		}
	}
	return nil
}

// Retract deletes incidents and their suspects (lightweight DELETE: the
// rows vanish from queries at once, and from disk at the next merge).
// Retractions are rare: they undo a provisional verdict that late data
// overturned.
func (w *EventsWriter) Retract(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	for _, q := range w.deletes {
		if err := w.conn.Exec(ctx, q, ids); err != nil {
			return fmt.Errorf("retract incidents: %s: %w", q, err)
		}
	}
	return nil
}

// Deploys reads back the deploys of an environment that went out in
// [from, to], of one service or (service "") of all, in their latest state.
// The correlator keeps only recent deploys in memory and asks here when a
// late event needs older ones. Every value is a bound parameter.
func (w *EventsWriter) Deploys(ctx context.Context, env, service string, from, to time.Time) ([]correlate.DeployRow, error) {
	q := Query{SQL: `SELECT DeployId, Service, Environment, Version, Type, Status, DeployedAt, CommitSha, FirstCommitAt,
		LeadTimeSeconds, Author, Url, Attributes, ChangeFailure, FailureReason, RolledBackBy
		FROM deploys FINAL
		WHERE Environment = {env:String} AND ({service:String} = '' OR Service = {service:String})
			AND DeployedAt >= toDateTime64({from:String}, 9, 'UTC') AND DeployedAt <= toDateTime64({to:String}, 9, 'UTC')
		ORDER BY DeployedAt, DeployId`,
		Params: []Param{stringParam("env", env), stringParam("service", service), timeParam("from", from), timeParam("to", to)}}
	rows, err := q.Run(ctx, w.conn)
	if err != nil {
		return nil, fmt.Errorf("deploys of %s/%s: %w", env, service, err)
	}
	defer rows.Close()
	var out []correlate.DeployRow
	for rows.Next() {
		var d correlate.DeployRow
		if err := rows.Scan(&d.DeployID, &d.Service, &d.Environment, &d.Version, &d.Type, &d.Status, &d.DeployedAt, &d.CommitSha, &d.FirstCommitAt,
			&d.LeadTimeSeconds, &d.Author, &d.URL, &d.Attributes, &d.ChangeFailure, &d.FailureReason, &d.RolledBackBy); err != nil {
			return nil, fmt.Errorf("deploys of %s/%s: %w", env, service, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deploys of %s/%s: %w", env, service, err)
	}
	return out, nil
}

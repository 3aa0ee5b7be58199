package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/faultline-dev/faultline/processors/dora"
)

// DoraFilter narrows a DORA query. Empty strings and a zero Since match all.
type DoraFilter struct {
	Environment string
	Service     string
	Since       time.Time // whole days from this one on
}

// doraSQL aggregates dora_daily over a window; the daily arrays make the
// medians exact for any window. Its parameters are bound by the server
// (doraParams).
const doraSQL = `
SELECT
	Environment, Service,
	sum(Deployments) AS D,
	sum(ChangeFailures) AS F,
	sum(Incidents) AS I,
	if(D = 0, NULL, F / D) AS CFR,
	arrayFlatten(groupArray(TimeToRestoreSeconds)) AS ttr,
	if(empty(ttr), NULL, arrayReduce('quantileExactInclusive(0.5)', ttr)) AS MTTR,
	arrayFlatten(groupArray(LeadTimeSeconds)) AS lts,
	if(empty(lts), NULL, arrayReduce('quantileExactInclusive(0.5)', lts)) AS MLT,
	if(D = 0, 0, D / greatest(1, dateDiff('second', min(FirstDeployAt), max(LastDeployAt)) / 86400)) AS PerDay
FROM db.dora_daily
WHERE ({environment:String} = '' OR Environment = {environment:String})
  AND ({service:String} = '' OR Service = {service:String})
  AND Day >= toDate({since:String})
GROUP BY Environment, Service
ORDER BY Environment, Service`

// Dora returns the four keys per environment and service, rated.
func Dora(ctx context.Context, conn driver.Conn, database string, f DoraFilter) ([]dora.Summary, error) {
	r, err := NewReader(conn, database)
	if err != nil {
		return nil, err
	}
	return runDora(ctx, conn, r.DoraQuery(f))
}

func runDora(ctx context.Context, conn driver.Conn, q Query) ([]dora.Summary, error) {
	rows, err := q.Run(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("dora query: %w", err)
	}
	defer rows.Close()
	var out []dora.Summary
	for rows.Next() {
		var s dora.Summary
		var ttr, lts []float64
		if err := rows.Scan(&s.Environment, &s.Service, &s.Deployments, &s.ChangeFailures, &s.Incidents,
			&s.ChangeFailureRate, &ttr, &s.MedianTimeToRestoreSeconds, &lts, &s.MedianLeadTimeSeconds, &s.DeploysPerDay); err != nil {
			return nil, fmt.Errorf("dora row: %w", err)
		}
		s.Rate()
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dora rows: %w", err)
	}
	return out, nil
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/faultline-dev/faultline/processors/dora"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
)

// cmdDora prints the four DORA keys and their bands per environment and
// service, read from ClickHouse.
func cmdDora(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dora", flag.ContinueOnError)
	env := fs.String("env", "", "only this environment")
	svc := fs.String("service", "", "only this service")
	since := fs.String("since", "", "window: whole days from this long ago (e.g. 30d, 12h, 2w) or a date (2026-11-01); empty is all time")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if help, err := noArgs(fs, args, out); help || err != nil {
		return err
	}
	f := clickhouse.DoraFilter{Environment: *env, Service: *svc}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		f.Since = t
	}
	cfg, err := loadConfig(roles["dora"])
	if err != nil {
		return err
	}
	if len(cfg.ClickHouse.Addr) == 0 {
		// The local ClickHouse of a running `make run`.
		cfg.ClickHouse.Addr = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.ClickHouse.LocalTCPPort))}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(ctx, cfg.ClickHouse, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := clickhouse.Dora(ctx, conn, cfg.ClickHouse.Database, f)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []dora.Summary{}
		}
		return enc.Encode(rows)
	}
	return printDora(out, rows)
}

func printDora(out io.Writer, rows []dora.Summary) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tSERVICE\tDEPLOYS\tDEPLOYS/DAY\tLEAD TIME\tCHANGE FAILURE RATE\tINCIDENTS\tTIME TO RESTORE")
	for _, s := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f (%s)\t%s\t%s\t%d\t%s\n",
			s.Environment, s.Service, s.Deployments, s.DeploysPerDay, band(s.Bands.DeploymentFrequency),
			withBand(seconds(s.MedianLeadTimeSeconds), s.Bands.LeadTime),
			withBand(percent(s.ChangeFailureRate, s.ChangeFailures, s.Deployments), s.Bands.ChangeFailureRate),
			s.Incidents,
			withBand(seconds(s.MedianTimeToRestoreSeconds), s.Bands.TimeToRestore))
	}
	if len(rows) == 0 {
		fmt.Fprintln(tw, "(no deploys or incidents in this window)")
	}
	return tw.Flush()
}

func band(b dora.Band) string {
	if b == dora.None {
		return "-"
	}
	return string(b)
}

func withBand(v string, b dora.Band) string {
	if b == dora.None {
		return v
	}
	return v + " (" + string(b) + ")"
}

func seconds(s *float64) string {
	if s == nil {
		return "-"
	}
	return (time.Duration(*s) * time.Second).Round(time.Second).String()
}

func percent(r *float64, n, of uint64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%% (%d/%d)", *r*100, n, of)
}

// parseSince reads "30d", "2w", "12h", a Go duration, or a date.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	if u, ok := unit[s[len(s)-1]]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(s[:len(s)-1]))
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("%q: want a count of days (30d), weeks (2w), a duration (12h) or a date (2026-11-01)", s)
		}
		return now.Add(-time.Duration(n) * u), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q: want a count of days (30d), weeks (2w), a duration (12h) or a date (2026-11-01)", s)
	}
	return now.Add(-d), nil
}

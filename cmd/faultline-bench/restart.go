package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/detect"
	"github.com/faultline-dev/faultline/processors/events"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

// restartBench measures a correlator restart over a year of history: a
// deploy a day for services services (365,000 deploy events for 1000) is
// published to the EVENTS stream as the gateway would, `faultline
// correlator` works through it and checkpoints, and is stopped. Then a
// deploy and the aggregates of an incident right after it arrive while it
// is down, and it is started again: the figures are the time from start
// to /readyz and to the incident with its suspect in ClickHouse, and the
// process's peak RSS. For contrast, a correlator without the checkpoint
// (another bucket, another database) replays the year to the same
// incident.
func restartBench(bin string, services int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "faultline-restart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(os.Stderr, "restart: starting local ClickHouse and embedded NATS ...")
	st, err := startLocal(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer st.stop()
	ch, ns, js := st.ch, st.ns, st.js
	for _, db := range []string{"restart", "replay"} {
		if err := clickhouse.Migrate(ctx, clickhouse.Config{Addr: []string{ch.Addr}, Database: db, User: "default", DialTimeout: 5 * time.Second}, nil); err != nil {
			return err
		}
	}

	// A year of deploys, a day apart per service, ending an hour ago.
	now := time.Now().UTC()
	end := now.Add(-time.Hour)
	n := services * 365
	fmt.Fprintf(os.Stderr, "restart: publishing %d deploy events ...\n", n)
	pub := time.Now()
	for day := 0; day < 365; day++ {
		for s := 0; s < services; s++ {
			at := end.Add(-time.Duration(364-day)*24*time.Hour - time.Duration(s)*time.Second)
			d := events.Deploy{ID: fmt.Sprintf("dep-%04d-%03d", s, day), Service: fmt.Sprintf("svc-%04d", s), Environment: "production",
				Version: fmt.Sprintf("v1.%d.0", day), Timestamp: at, Type: events.TypeDeploy, Status: events.StatusSucceeded,
				Commit: fmt.Sprintf("%040x", s*1000+day), Commits: []events.Commit{{SHA: fmt.Sprintf("%040x", s*1000+day), Timestamp: at.Add(-3 * time.Hour)}},
				Author: "ci@example.com", URL: fmt.Sprintf("https://ci.example.com/svc-%04d/%d", s, day)}
			if err := publishEvent(ctx, js, broker.DeploysSubject, d, d.MsgID()); err != nil {
				return err
			}
			if (day*services+s)%2000 == 1999 {
				<-js.PublishAsyncComplete()
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return fmt.Errorf("deploy events not acknowledged within a minute")
	}
	fmt.Fprintf(os.Stderr, "restart: published in %s\n", time.Since(pub).Round(time.Millisecond))

	env := func(db, bucket string) []string {
		return []string{"FAULTLINE_NATS_URL=" + ns.ClientURL(), "FAULTLINE_CLICKHOUSE_ADDR=" + ch.Addr, "FAULTLINE_CLICKHOUSE_DATABASE=" + db,
			"FAULTLINE_CORRELATOR_CHECKPOINT_BUCKET=" + bucket, "FAULTLINE_LOG_LEVEL=warn"}
	}
	// 1. The first start: the year from scratch, then a checkpoint.
	first, err := startCorrelator(bin, dir, env("restart", "faultline_correlator"))
	if err != nil {
		return err
	}
	ready1, err := first.waitReady(30 * time.Minute)
	if err != nil {
		first.stop()
		return err
	}
	rss1 := first.stop() // it checkpoints at shutdown
	store, err := js.ObjectStore(ctx, "faultline_correlator")
	if err != nil {
		return fmt.Errorf("no checkpoint bucket after the first run: %w", err)
	}
	info, err := store.GetInfo(ctx, "state")
	if err != nil {
		return fmt.Errorf("no checkpoint after the first run: %w", err)
	}
	fmt.Fprintf(os.Stderr, "restart: first run caught up after %s, peak RSS %.0f MB, checkpoint %d bytes\n", ready1.Round(time.Millisecond), rss1, info.Size)

	// 2. While it is down: a deploy, then an incident in its telemetry.
	depID, err := injectIncident(ctx, js, now)
	if err != nil {
		return err
	}
	second, err := startCorrelator(bin, dir, env("restart", "faultline_correlator"))
	if err != nil {
		return err
	}
	ready2, err := second.waitReady(10 * time.Minute)
	if err != nil {
		second.stop()
		return err
	}
	corr2, err := waitCorrelated(ctx, ch.Addr, "restart", depID, second.started, 10*time.Minute)
	rss2 := second.stop()
	if err != nil {
		return err
	}

	// 3. For contrast: no checkpoint, the whole year again.
	third, err := startCorrelator(bin, dir, env("replay", "bench_no_checkpoint"))
	if err != nil {
		return err
	}
	ready3, err := third.waitReady(30 * time.Minute)
	if err != nil {
		third.stop()
		return err
	}
	corr3, err := waitCorrelated(ctx, ch.Addr, "replay", depID, third.started, 30*time.Minute)
	rss3 := third.stop()
	if err != nil {
		return err
	}

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CORRELATOR RESTART, "+strconv.Itoa(n)+" DEPLOY EVENTS\tREADY (/readyz)\tCORRELATED NEW INCIDENT\tPEAK RSS\tTARGET")
	fmt.Fprintf(tw, "first start (no checkpoint, no incident)\t%s\t-\t%.0f MB\t\n", ready1.Round(time.Millisecond), rss1)
	fmt.Fprintf(tw, "restart from the checkpoint (%d KB)\t%s\t%s\t%.0f MB\t<= 10 s, <= 250 MB\n", info.Size/1024, ready2.Round(time.Millisecond),
		corr2.Round(time.Millisecond), rss2)
	fmt.Fprintf(tw, "restart without it (full replay)\t%s\t%s\t%.0f MB\t\n", ready3.Round(time.Millisecond), corr3.Round(time.Millisecond), rss3)
	return tw.Flush()
}

func publishEvent(ctx context.Context, js jetstream.JetStream, subject string, v any, id string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m := nats.NewMsg(subject)
	m.Data = b
	m.Header.Set(nats.MsgIdHdr, id)
	m.Header.Set("Content-Type", "application/json")
	_, err = js.PublishMsgAsync(m)
	return err
}

// injectIncident publishes a deploy of svc-0001 twenty minutes ago and the
// aggregates workers would publish for its telemetry: ten clean minutes,
// four minutes at 30% errors right after the deploy, then clean ones up to
// now, so that the final verdict opens an incident the deploy is to blame
// for. It returns the deploy's id.
func injectIncident(ctx context.Context, js jetstream.JetStream, now time.Time) (string, error) {
	m0 := now.Truncate(time.Minute).Add(-20 * time.Minute)
	d := events.Deploy{ID: "dep-bench-bad", Service: "svc-0001", Environment: "production", Version: "v2.0.0",
		Timestamp: m0.Add(9*time.Minute + 30*time.Second), Type: events.TypeDeploy, Status: events.StatusSucceeded}
	if err := publishEvent(ctx, js, broker.DeploysSubject, d, d.MsgID()); err != nil {
		return "", err
	}
	type entry struct {
		Seq  uint64             `json:"seq"`
		Aggs []detect.Aggregate `json:"aggs,omitempty"`
	}
	var msgs []entry
	for i := 0; i < 20; i++ {
		a := detect.Aggregate{Service: "svc-0001", Environment: "production", Version: "v1.364.0", Minute: m0.Add(time.Duration(i) * time.Minute).Unix(), Total: 200}
		if i >= 10 {
			a.Version = "v2.0.0"
		}
		if i >= 10 && i < 14 {
			a.Errors = 60
		}
		msgs = append(msgs, entry{Seq: uint64(i + 1), Aggs: []detect.Aggregate{a}})
	}
	if err := publishEvent(ctx, js, broker.AggregatesSubject, map[string]any{"messages": msgs}, "agg/bench-incident"); err != nil {
		return "", err
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("incident not acknowledged")
	}
	return d.ID, nil
}

// waitCorrelated waits for an incident pinned on deploy in the incidents
// table and returns how long after start it appeared.
func waitCorrelated(ctx context.Context, addr, db, deploy string, start time.Time, limit time.Duration) (time.Duration, error) {
	conn, err := chgo.Open(&chgo.Options{Addr: []string{addr}, Auth: chgo.Auth{Database: db, Username: "default"}})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	for time.Since(start) < limit {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM incidents FINAL WHERE SuspectDeployId = ?", deploy).Scan(&n); err == nil && n > 0 {
			return time.Since(start), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("no incident pinned on %s within %s", deploy, limit)
}

// child is a `faultline correlator` process.
type child struct {
	cmd     *exec.Cmd
	admin   string
	started time.Time
	log     string
}

func startCorrelator(bin, dir string, env []string) (*child, error) {
	port, err := chlocal.FreePort()
	if err != nil {
		return nil, err
	}
	c := &child{admin: "127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(dir, "correlator-"+strconv.Itoa(port)+".log")}
	c.cmd = exec.Command(filepath.Join(bin, "faultline"), "correlator")
	c.cmd.Env = append(append(os.Environ(), env...), "FAULTLINE_ADMIN_LISTEN="+c.admin)
	f, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	c.cmd.Stdout, c.cmd.Stderr = f, f
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// waitReady polls /readyz and returns how long after start it said ready.
func (c *child) waitReady(limit time.Duration) (time.Duration, error) {
	for time.Since(c.started) < limit {
		if resp, err := http.Get("http://" + c.admin + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(c.started), nil
			}
		}
		if c.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(c.log)
	return 0, fmt.Errorf("the correlator was not ready within %s:\n%s", limit, b)
}

// stop ends the process gracefully and returns its peak RSS in MB.
func (c *child) stop() float64 {
	rss := peakRSS(c.cmd.Process.Pid)
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
	return rss
}

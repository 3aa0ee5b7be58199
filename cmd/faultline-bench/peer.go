package main

// -peer: faultline against the OpenTelemetry Collector with the contrib
// ClickHouse exporter, end to end, under the same load (telemetrygen over
// OTLP/gRPC) into the same local ClickHouse. Each side runs as separate
// processes whose CPU time the kernel reports (/proc/<pid>/stat), so the
// figures say where each record's CPU goes: the Collector and ClickHouse on
// one side; the gateway, the NATS server, the worker and ClickHouse on the
// other; telemetrygen on both. Runs alternate A B B A (Collector, faultline,
// faultline, Collector) so drift on a shared machine cancels in the pairs.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // the NATS child's profile endpoint (-peer-profile)
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

var (
	peerMode    = flag.Bool("peer", false, "compare faultline with the OpenTelemetry Collector's ClickHouse exporter end to end (make bench-peer)")
	peerRounds  = flag.Int("peer-rounds", 1, "A B B A rounds (Collector, faultline, faultline, Collector) per signal")
	peerLogs    = flag.Int("peer-logs", 600_000, "log records per run")
	peerPoints  = flag.Int("peer-points", 400_000, "metric points per run")
	peerSignals = flag.String("peer-signals", "logs,gauge,sum,histogram", "signals to measure, comma separated")
	peerBatch   = flag.Int("peer-collector-batch", 50_000, "the Collector's batch processor send_batch_size (faultline's worker batches 50000 records)")
	peerProfile = flag.String("peer-profile", "", "after the measured runs, one more faultline run per signal (ten times the records) writing 20 s CPU profiles of the gateway, NATS and the worker to `prefix`.<signal>.<stage>.pprof")
	peerFLEnv   = flag.String("peer-faultline-env", "", "settings for faultline's processes only (NATS, worker, gateway), comma separated `KEY=VALUE`s, to measure a tuning: GOMAXPROCS=1, FAULTLINE_GATEWAY_COMPRESSION=none")
	natsServe   = flag.String("nats-serve", "", "internal: serve an embedded NATS server storing in `dir` (-peer runs NATS as a process of its own this way)")
)

// peerEnvs is -peer-faultline-env as KEY=VALUE entries.
func peerEnvs() []string {
	var out []string
	for _, kv := range strings.Split(*peerFLEnv, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			out = append(out, kv)
		}
	}
	return out
}

// Load shape: 4 telemetrygen workers sending requests of 1000 records.
const (
	tgWorkers = 4
	tgBatch   = 1000
)

// proc is a process whose CPU a run accounts for.
type proc struct {
	name string
	pid  int
	cmd  *exec.Cmd // nil for processes this run did not start
}

// peerRun is one measured run of one side.
type peerRun struct {
	side     string // "collector" or "faultline"
	records  int    // sent
	stored   uint64 // counted in ClickHouse
	elapsed  time.Duration
	cpu      map[string]float64 // process name -> CPU-us
	machine  float64            // whole machine busy CPU-us (/proc/stat)
	tables   []tableCPU
	tgFailed error
}

func (r *peerRun) rate() float64 { return float64(r.stored) / r.elapsed.Seconds() }

// perRecord is CPU-us per record of the named processes; none: all of them.
func (r *peerRun) perRecord(names ...string) float64 {
	var us float64
	for n, v := range r.cpu {
		if len(names) == 0 || slices.Contains(names, n) {
			us += v
		}
	}
	return us / float64(r.records)
}

func (r *peerRun) ok() bool { return r.tgFailed == nil && r.stored == uint64(r.records) }

// tableCPU is ClickHouse's own account of a table's inserts and merges.
type tableCPU struct {
	table                 string
	inserts, rows         uint64
	insertUS, mergeUS     float64
	merges                uint64
	insertMS, mergeMillis uint64
}

type peerEnv struct {
	bin, self, dir string
	tg, otelcol    string // telemetrygen and the Collector
	ch             *chlocal.Server
	chPid          int
	conn           chgo.Conn
	n              int // runs so far, for unique names
}

// signalSpec says how telemetrygen makes a signal and where it lands.
type signalSpec struct {
	name   string
	args   []string // telemetrygen arguments before the count
	count  string   // telemetrygen's per-worker count flag
	tables []string
}

var peerSpecs = map[string]signalSpec{
	"logs":      {"logs", []string{"logs"}, "--logs", []string{"otel_logs"}},
	"gauge":     {"gauge", []string{"metrics", "--metric-type", "Gauge"}, "--metrics", []string{"otel_metrics_gauge"}},
	"sum":       {"sum", []string{"metrics", "--metric-type", "Sum"}, "--metrics", []string{"otel_metrics_sum"}},
	"histogram": {"histogram", []string{"metrics", "--metric-type", "Histogram"}, "--metrics", []string{"otel_metrics_histogram"}},
}

// serveNATS is the NATS server process of -peer: an embedded server on
// FAULTLINE_NATS_LISTEN storing in dir until SIGTERM. It prints "ready"
// once it accepts clients; with FAULTLINE_BENCH_PPROF it serves
// /debug/pprof there.
func serveNATS(dir string) error {
	c := broker.DefaultConfig()
	if l := os.Getenv("FAULTLINE_NATS_LISTEN"); l != "" {
		c.Listen = l
	}
	ns, err := broker.StartEmbedded(c, dir, nil)
	if err != nil {
		return err
	}
	if a := os.Getenv("FAULTLINE_BENCH_PPROF"); a != "" {
		go func() { _ = http.ListenAndServe(a, nil) }()
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// peerMain runs -peer, or -nats-serve for a -peer run.
func peerMain(bin string) error {
	if *natsServe != "" {
		return serveNATS(*natsServe)
	}
	bin, _ = filepath.Abs(bin)
	return peer(bin)
}

func peer(bin string) error {
	ctx := context.Background()
	otelcol := filepath.Join(bin, "otelcol-clickhouse")
	tg := os.Getenv("FAULTLINE_TELEMETRYGEN_BIN")
	if tg == "" {
		tg = filepath.Join(bin, "telemetrygen")
	}
	for _, f := range []string{otelcol, tg, filepath.Join(bin, "faultline")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (make bench-peer builds it)", err)
		}
	}
	var signals []signalSpec
	for _, s := range strings.Split(*peerSignals, ",") {
		spec, ok := peerSpecs[strings.TrimSpace(s)]
		if !ok {
			return fmt.Errorf("-peer-signals: unknown signal %q (logs, gauge, sum, histogram)", s)
		}
		signals = append(signals, spec)
	}
	for _, kv := range peerEnvs() {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("-peer-faultline-env: %q is not KEY=VALUE", kv)
		}
	}
	if *peerRounds < 1 || *peerLogs < tgWorkers*tgBatch || *peerPoints < tgWorkers*tgBatch {
		return fmt.Errorf("-peer-rounds must be at least 1 and -peer-logs, -peer-points at least %d", tgWorkers*tgBatch)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "faultline-peer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(os.Stderr, "starting local ClickHouse ...")
	ch, err := chlocal.Start(ctx, chlocal.Options{Bin: filepath.Join(bin, "faultline-clickhouse"), Dir: filepath.Join(dir, "ch"), QueryLog: true})
	if err != nil {
		return err
	}
	defer ch.Stop()
	chPid := childPid("faultline-clickhouse")
	if chPid == 0 {
		return errors.New("cannot find the ClickHouse server process")
	}
	conn, err := chgo.Open(&chgo.Options{Addr: []string{ch.Addr}, Auth: chgo.Auth{Username: "default"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	e := &peerEnv{bin: bin, self: self, dir: dir, ch: ch, chPid: chPid, conn: conn}
	e.tg = tg
	e.otelcol = otelcol

	results := map[string][]*peerRun{}
	for _, s := range signals {
		n := *peerLogs
		if s.name != "logs" {
			n = *peerPoints
		}
		for round := 0; round < *peerRounds; round++ {
			for _, side := range []string{"collector", "faultline", "faultline", "collector"} {
				r, err := e.run(ctx, side, s, n, "")
				if err != nil {
					return fmt.Errorf("%s %s: %w", side, s.name, err)
				}
				results[s.name] = append(results[s.name], r)
				fmt.Fprintf(os.Stderr, "  %-9s %-9s %8.0f records/s  %6.2f CPU-us/record (all processes)  stored %d/%d%s\n",
					s.name, side, r.rate(), r.perRecord(), r.stored, r.records, failNote(r))
			}
		}
	}
	report(signals, results)
	if *peerProfile != "" {
		for _, s := range signals {
			n := *peerLogs
			if s.name != "logs" {
				n = *peerPoints
			}
			// Ten times the records, so the profiles' 20 s (from 4 s
			// in) fall in the run's steady middle and hold enough
			// samples of the gateway, which uses a tenth of a core.
			if _, err := e.run(ctx, "faultline", s, 10*n, *peerProfile+"."+s.name); err != nil {
				return fmt.Errorf("profile run %s: %w", s.name, err)
			}
		}
		fmt.Fprintf(os.Stderr, "profiles written to %s.<signal>.{gateway,nats,worker}.pprof\n", *peerProfile)
	}
	return nil
}

func failNote(r *peerRun) string {
	switch {
	case r.tgFailed != nil:
		return "  LOAD GENERATOR FAILED: " + r.tgFailed.Error()
	case r.stored < uint64(r.records):
		return fmt.Sprintf("  LOST %d", uint64(r.records)-r.stored)
	case r.stored > uint64(r.records):
		return fmt.Sprintf("  DOUBLED %d", r.stored-uint64(r.records))
	}
	return ""
}

// run measures one side on one signal: fresh processes and a fresh
// database, then telemetrygen sends n records and the run ends when
// ClickHouse holds them all (or nothing arrived for 20 s).
func (e *peerEnv) run(ctx context.Context, side string, s signalSpec, n int, profile string) (*peerRun, error) {
	e.n++
	db := fmt.Sprintf("peer_%s_%s_%d", side, s.name, e.n)
	e.settle(ctx)
	var procs []proc
	var endpoint string
	stop := func() {
		for i := len(procs) - 1; i >= 0; i-- { // the load's end first
			if c := procs[i].cmd; c != nil {
				_ = c.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { _ = c.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					_ = c.Process.Kill()
					<-done
				}
			}
		}
	}
	defer stop()
	var admins map[string]string
	var err error
	if side == "collector" {
		procs, endpoint, err = e.startCollector(ctx, db)
	} else {
		procs, endpoint, admins, err = e.startFaultline(ctx, db, profile != "")
	}
	if err != nil {
		return nil, err
	}
	procs = append(procs, proc{name: "clickhouse", pid: e.chPid})

	cpu0 := map[string]float64{}
	for _, p := range procs {
		cpu0[p.name] = procCPU(p.pid)
	}
	m0 := machineCPU()
	per := n / tgWorkers
	args := append(slices.Clone(s.args), "--otlp-endpoint", endpoint, "--otlp-insecure", "--workers", strconv.Itoa(tgWorkers),
		"--rate", "0", "--batch-size", strconv.Itoa(tgBatch), s.count, strconv.Itoa(per))
	tg := exec.Command(e.tg, args...)
	var tgOut strings.Builder
	tg.Stdout, tg.Stderr = &tgOut, &tgOut
	t0 := time.Now()
	if err := tg.Start(); err != nil {
		return nil, err
	}
	tgDone := make(chan error, 1)
	go func() { tgDone <- tg.Wait() }()
	if profile != "" {
		// From 4 s in: a fresh worker's first batches grow its pooled
		// columns from nothing, which a long-running one never pays again.
		go func() {
			time.Sleep(4 * time.Second)
			for stage, a := range admins {
				go fetchProfile("http://"+a+"/debug/pprof/profile?seconds=20", profile+"."+stage+".pprof")
			}
		}()
	}
	r := &peerRun{side: side, records: per * tgWorkers, cpu: map[string]float64{}}
	var last uint64
	lastChange := time.Now()
	tgRunning := true
	for {
		select {
		case err := <-tgDone:
			tgRunning = false
			if err != nil {
				r.tgFailed = fmt.Errorf("%v: %s", err, lastLines(tgOut.String(), 3))
			}
		default:
		}
		got, err := e.count(ctx, db, s.tables)
		if err != nil && !strings.Contains(err.Error(), "UNKNOWN_TABLE") {
			return nil, err
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if got >= uint64(r.records) || (!tgRunning && time.Since(lastChange) > 20*time.Second) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.elapsed = time.Since(t0)
	for _, p := range procs {
		r.cpu[p.name] = procCPU(p.pid) - cpu0[p.name]
	}
	r.machine = machineCPU() - m0
	if tgRunning {
		if err := <-tgDone; err != nil {
			r.tgFailed = fmt.Errorf("%v: %s", err, lastLines(tgOut.String(), 3))
		}
	}
	ru := tg.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu["telemetrygen"] = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
	// A straggler that lands after the count was reached would be a
	// doubled row: look once more after a moment.
	time.Sleep(time.Second)
	if r.stored, err = e.count(ctx, db, s.tables); err != nil {
		return nil, err
	}
	stop()
	procs = nil
	r.tables = e.tableCPU(ctx, db)
	if err := e.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC"); err != nil {
		return nil, err
	}
	return r, nil
}

// settle waits (at most 30 s) for the merges of earlier runs' parts,
// which compete for the same cores.
func (e *peerEnv) settle(ctx context.Context) {
	for t := time.Now(); time.Since(t) < 30*time.Second; time.Sleep(200 * time.Millisecond) {
		var merges uint64
		if err := e.conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&merges); err != nil || merges == 0 {
			return
		}
	}
}

func (e *peerEnv) count(ctx context.Context, db string, tables []string) (uint64, error) {
	var total uint64
	for _, t := range tables {
		var n uint64
		if err := e.conn.QueryRow(ctx, "SELECT count() FROM "+db+"."+t).Scan(&n); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// tableCPU reads ClickHouse's query and part logs for a database: CPU of
// its inserts (including asynchronous insert flushes) and merges by table.
func (e *peerEnv) tableCPU(ctx context.Context, db string) []tableCPU {
	if err := e.conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		fmt.Fprintln(os.Stderr, "flush logs:", err)
		return nil
	}
	byTable := map[string]*tableCPU{}
	get := func(t string) *tableCPU {
		t = strings.TrimPrefix(t, db+".")
		if byTable[t] == nil {
			byTable[t] = &tableCPU{table: t}
		}
		return byTable[t]
	}
	rows, err := e.conn.Query(ctx, `SELECT arrayJoin(tables) AS t, count(), sum(written_rows),
		sum(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds']), sum(query_duration_ms)
		FROM system.query_log WHERE type = 'QueryFinish' AND has(databases, ?) AND query_kind IN ('Insert', 'AsyncInsertFlush')
		GROUP BY t`, db)
	if err != nil {
		fmt.Fprintln(os.Stderr, "query_log:", err)
	} else {
		for rows.Next() {
			var t string
			var c, w, us, ms uint64
			if rows.Scan(&t, &c, &w, &us, &ms) == nil {
				tc := get(t)
				tc.inserts, tc.rows, tc.insertUS, tc.insertMS = c, w, float64(us), ms
			}
		}
		rows.Close()
	}
	rows, err = e.conn.Query(ctx, `SELECT table, count(), sum(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds']), sum(duration_ms)
		FROM system.part_log WHERE database = ? AND event_type = 'MergeParts' GROUP BY table`, db)
	if err != nil {
		fmt.Fprintln(os.Stderr, "part_log:", err)
	} else {
		for rows.Next() {
			var t string
			var c, us, ms uint64
			if rows.Scan(&t, &c, &us, &ms) == nil {
				tc := get(t)
				tc.merges, tc.mergeUS, tc.mergeMillis = c, float64(us), ms
			}
		}
		rows.Close()
	}
	var out []tableCPU
	for _, t := range byTable {
		if t.rows > 0 || t.merges > 0 {
			out = append(out, *t)
		}
	}
	slices.SortFunc(out, func(a, b tableCPU) int { return strings.Compare(a.table, b.table) })
	return out
}

// startCollector runs the Collector with the otlp receiver, the batch
// processor and the ClickHouse exporter, which creates its tables in db.
func (e *peerEnv) startCollector(ctx context.Context, db string) ([]proc, string, error) {
	port, err := chlocal.FreePort()
	if err != nil {
		return nil, "", err
	}
	endpoint := "127.0.0.1:" + strconv.Itoa(port)
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  batch:
    send_batch_size: %d
    timeout: 1s
exporters:
  clickhouse:
    endpoint: tcp://%s?dial_timeout=10s
    database: %s
    username: default
    create_schema: true
    timeout: 60s
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [clickhouse]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [clickhouse]
`, endpoint, *peerBatch, e.ch.Addr, db)
	file := filepath.Join(e.dir, db+".yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(e.otelcol, "--config", file)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	procs := []proc{{name: "collector", pid: cmd.Process.Pid, cmd: cmd}}
	// Exporters start before receivers: once the port answers, the
	// tables exist.
	if err := waitTCP(endpoint, cmd); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, "", fmt.Errorf("collector: %w", err)
	}
	return procs, endpoint, nil
}

// startFaultline runs NATS (this binary with -nats-serve), `faultline
// worker` and `faultline gateway` as processes of their own, with their
// defaults but for addresses and the database.
func (e *peerEnv) startFaultline(ctx context.Context, db string, pprof bool) ([]proc, string, map[string]string, error) {
	ports := map[string]int{}
	for _, k := range []string{"nats", "natsadmin", "gw", "grpc", "gwadmin", "wadmin"} {
		p, err := chlocal.FreePort()
		if err != nil {
			return nil, "", nil, err
		}
		ports[k] = p
	}
	addr := func(k string) string { return "127.0.0.1:" + strconv.Itoa(ports[k]) }
	natsURL := "nats://" + addr("nats")
	var procs []proc
	fail := func(err error) ([]proc, string, map[string]string, error) {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].cmd.Process.Kill()
			_ = procs[i].cmd.Wait()
		}
		return nil, "", nil, err
	}

	ns := exec.Command(e.self, "-nats-serve", filepath.Join(e.dir, db+"-nats"))
	ns.Env = append(append(os.Environ(), peerEnvs()...), "FAULTLINE_NATS_LISTEN="+addr("nats"))
	if pprof {
		ns.Env = append(ns.Env, "FAULTLINE_BENCH_PPROF="+addr("natsadmin"))
	}
	ns.Stderr = os.Stderr
	out, err := ns.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := ns.Start(); err != nil {
		return fail(err)
	}
	procs = append(procs, proc{name: "nats", pid: ns.Process.Pid, cmd: ns})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		return fail(fmt.Errorf("nats server did not start: %q %v", line, err))
	}

	common := append([]string{"FAULTLINE_NATS_URL=" + natsURL, "FAULTLINE_LOG_LEVEL=warn"}, peerEnvs()...)
	w := exec.Command(filepath.Join(e.bin, "faultline"), "worker")
	w.Env = append(os.Environ(), common...)
	w.Env = append(w.Env, "FAULTLINE_CLICKHOUSE_ADDR="+e.ch.Addr, "FAULTLINE_CLICKHOUSE_DATABASE="+db, "FAULTLINE_ADMIN_LISTEN="+addr("wadmin"))
	w.Stdout, w.Stderr = os.Stderr, os.Stderr
	if err := w.Start(); err != nil {
		return fail(err)
	}
	procs = append(procs, proc{name: "worker", pid: w.Process.Pid, cmd: w})
	g := exec.Command(filepath.Join(e.bin, "faultline"), "gateway")
	g.Env = append(os.Environ(), common...)
	g.Env = append(g.Env, "FAULTLINE_GATEWAY_LISTEN="+addr("gw"), "FAULTLINE_GATEWAY_GRPC_LISTEN="+addr("grpc"), "FAULTLINE_ADMIN_LISTEN="+addr("gwadmin"))
	g.Stdout, g.Stderr = os.Stderr, os.Stderr
	if err := g.Start(); err != nil {
		return fail(err)
	}
	procs = append(procs, proc{name: "gateway", pid: g.Process.Pid, cmd: g})
	for _, a := range []string{addr("wadmin"), addr("gwadmin")} {
		if err := waitReady(ctx, "http://"+a+"/readyz"); err != nil {
			return fail(err)
		}
	}
	admins := map[string]string{"gateway": addr("gwadmin"), "worker": addr("wadmin"), "nats": addr("natsadmin")}
	return procs, addr("grpc"), admins, nil
}

func waitTCP(addr string, cmd *exec.Cmd) error {
	for t := time.Now(); time.Since(t) < time.Minute; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		if cmd.ProcessState != nil {
			return errors.New("exited")
		}
	}
	return fmt.Errorf("%s did not open within a minute", addr)
}

func waitReady(ctx context.Context, url string) error {
	for t := time.Now(); time.Since(t) < time.Minute; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("%s not ready within a minute", url)
}

// childPid finds this process's child running the named program.
func childPid(name string) int {
	ents, _ := os.ReadDir("/proc")
	me := os.Getpid()
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		f := statFields(b)
		if len(f) > 1 && f[1] == strconv.Itoa(me) {
			if exe, _ := os.Readlink("/proc/" + d.Name() + "/exe"); filepath.Base(exe) == name {
				return pid
			}
		}
	}
	return 0
}

// statFields are /proc/<pid>/stat's fields after the command name (which
// may hold spaces): [0] is the state, [1] the parent, [11] utime, [12] stime.
func statFields(b []byte) []string {
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s)
}

// clockTick is the kernel's USER_HZ, 100 on every Linux that Go supports.
const clockTick = 100

// procCPU is a process's user+system CPU time so far in us.
func procCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := statFields(b)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) * 1e6 / clockTick
}

// machineCPU is the whole machine's busy CPU time so far in us: every
// column of /proc/stat's cpu line but idle and iowait.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var busy float64
	for i, v := range strings.Fields(line)[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy * 1e6 / clockTick
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}

// report prints, per signal, both sides' means over their runs, the
// ratios with their spread over the A B / B A pairs, the targets, and
// where the CPU went.
func report(signals []signalSpec, results map[string][]*peerRun) {
	fmt.Println()
	fmt.Printf("faultline vs OpenTelemetry Collector %s (otlp receiver, batch %d, clickhouseexporter), telemetrygen OTLP/gRPC, %d workers, %d records per request\n",
		"v0.161.0", *peerBatch, tgWorkers, tgBatch)
	fmt.Printf("%s, %d cores; A B B A x %d per signal; CPU from /proc/<pid>/stat of every process involved\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), *peerRounds)
	if env := peerEnvs(); len(env) > 0 {
		fmt.Printf("faultline's processes ran with %s (-peer-faultline-env); the Collector with its defaults\n\n", strings.Join(env, " "))
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SIGNAL\tFIGURE\tFAULTLINE\tCOLLECTOR\tRATIO (pairs)\tTARGET")
	for _, s := range signals {
		runs := results[s.name]
		var fl, co []*peerRun
		bad := 0
		for _, r := range runs {
			if !r.ok() {
				bad++
			}
			if r.side == "faultline" {
				fl = append(fl, r)
			} else {
				co = append(co, r)
			}
		}
		pairs := pairsOf(runs)
		row := func(fig string, f func(*peerRun) float64, format string, target float64, lower bool) {
			fv, cv := mean(fl, f), mean(co, f)
			var rs []float64
			for _, p := range pairs {
				rs = append(rs, f(p[0])/f(p[1]))
			}
			verdict := ""
			if target > 0 {
				met := fv/cv >= target
				op := ">="
				if lower {
					met, op = fv/cv <= target, "<="
				}
				verdict = fmt.Sprintf("%s %.2f: %s", op, target, map[bool]string{true: "met", false: "NOT met"}[met])
			}
			fmt.Fprintf(tw, "%s\t%s\t"+format+"\t"+format+"\t%.2f (%s)\t%s\n", s.name, fig, fv, cv, fv/cv, spread(rs), verdict)
		}
		row("records/s", (*peerRun).rate, "%.0f", 1.5, false)
		row("CPU-us/record, all processes", func(r *peerRun) float64 { return r.perRecord() }, "%.2f", 0.6, true)
		row("CPU-us/record, without telemetrygen", func(r *peerRun) float64 {
			return r.perRecord() - r.perRecord("telemetrygen")
		}, "%.2f", 0.6, true)
		row("CPU-us/record, whole machine (/proc/stat)", func(r *peerRun) float64 { return r.machine / float64(r.records) }, "%.2f", 0, false)
		row("CPU-us/record, telemetrygen", func(r *peerRun) float64 { return r.perRecord("telemetrygen") }, "%.2f", 0, false)
		row("CPU-us/record, ClickHouse server", func(r *peerRun) float64 { return r.perRecord("clickhouse") }, "%.2f", 0, false)
		fmt.Fprintf(tw, "%s\tCPU-us/record, pipeline\tgateway %.2f (target <= 0.25: %s), NATS %.2f, worker %.2f\tCollector %.2f\t\t\n", s.name,
			mean(fl, func(r *peerRun) float64 { return r.perRecord("gateway") }),
			map[bool]string{true: "met", false: "NOT met"}[mean(fl, func(r *peerRun) float64 { return r.perRecord("gateway") }) <= 0.25],
			mean(fl, func(r *peerRun) float64 { return r.perRecord("nats") }),
			mean(fl, func(r *peerRun) float64 { return r.perRecord("worker") }),
			mean(co, func(r *peerRun) float64 { return r.perRecord("collector") }))
		if bad > 0 {
			fmt.Fprintf(tw, "%s\tRUNS THAT LOST, DOUBLED OR FAILED\t%d of %d\t\t\t\n", s.name, bad, len(runs))
			for _, r := range runs {
				if !r.ok() {
					fmt.Fprintf(tw, "%s\t  %s\tstored %d of %d%s\t\t\t\n", s.name, r.side, r.stored, r.records, failNote(r))
				}
			}
		}
	}
	tw.Flush()
	fmt.Println("\nClickHouse by table, per row stored (system.query_log: inserts and async insert flushes; system.part_log: merges)")
	for _, s := range signals {
		for _, side := range []string{"faultline", "collector"} {
			var runs []*peerRun
			for _, r := range results[s.name] {
				if r.side == side {
					runs = append(runs, r)
				}
			}
			fmt.Printf("  %-9s %-9s %s\n", s.name, side, tablesLine(runs, s.tables))
		}
	}
}

// pairsOf pairs each faultline run with the Collector run next to it in
// A B B A order: (B1, A1), (B2, A2), ...
func pairsOf(runs []*peerRun) [][2]*peerRun {
	var out [][2]*peerRun
	for i := 0; i+3 < len(runs); i += 4 {
		out = append(out, [2]*peerRun{runs[i+1], runs[i]}, [2]*peerRun{runs[i+2], runs[i+3]})
	}
	return out
}

func mean(runs []*peerRun, f func(*peerRun) float64) float64 {
	var s float64
	for _, r := range runs {
		s += f(r)
	}
	return s / float64(len(runs))
}

func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f-%.2f", slices.Min(v), slices.Max(v))
}

// tablesLine sums ClickHouse's per-table figures over runs, per record.
func tablesLine(runs []*peerRun, tables []string) string {
	type acc struct{ ins, merge, inserts, merges float64 }
	m := map[string]*acc{}
	var records float64
	for _, r := range runs {
		records += float64(r.records)
		for _, t := range r.tables {
			if !slices.Contains(tables, t.table) {
				continue
			}
			if m[t.table] == nil {
				m[t.table] = &acc{}
			}
			a := m[t.table]
			a.ins += t.insertUS
			a.merge += t.mergeUS
			a.inserts += float64(t.inserts)
			a.merges += float64(t.merges)
		}
	}
	var parts []string
	for t, a := range m {
		n := float64(len(runs))
		parts = append(parts, fmt.Sprintf("%s: inserts %.2f CPU-us/row (%.0f per run), merges %.2f CPU-us/row (%.0f per run)", t, a.ins/records, a.inserts/n, a.merge/records, a.merges/n))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

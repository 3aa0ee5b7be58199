// Command faultline-bench measures faultline on this machine against
// baselines taken in the same run, so the ratios hold on a noisy, shared
// machine where absolute figures drift:
//
//   - insert ceiling: the same log rows, already decoded, inserted straight
//     into ClickHouse in 100k-row batches (what ClickHouse and the client
//     can take at most), and the Collector exporter's way for reference
//     (clickhouse-go PrepareBatch + row Append + Send);
//   - worker: `faultline worker` as its own process, from a pre-filled
//     JetStream stream of realistic log records (10 resource attributes,
//     5 log attributes, 100-byte bodies, 1000 records per message) to
//     committed rows; its CPU time and peak RSS come from the kernel;
//   - gateway: `faultline gateway` as its own process taking OTLP/HTTP
//     protobuf requests of 1000 records from a load generator here,
//     against publishing the same bytes to JetStream directly.
//
// make bench runs it; -records sets the size (default 2,000,000). make
// bench-soak runs -soak (soak.go): cost per interval over 100M records.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/otlp"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

const perMsg = 1000

// profile is where -profile writes the worker's profiles; empty: none.
var profile string

func main() {
	records := flag.Int("records", 2_000_000, "log records through the worker")
	gwRequests := flag.Int("gateway-requests", 500, "OTLP/HTTP requests of 1000 records through the gateway")
	bin := flag.String("bin", "bin", "folder with faultline and faultline-clickhouse")
	flag.StringVar(&profile, "profile", "", "write the worker's CPU profile (3 s from 1 s in) and a heap profile to `prefix`.cpu.pprof and prefix.heap.pprof")
	live := flag.Bool("live", false, "measure detection and alert latency on live telemetry instead (about five minutes)")
	restart := flag.Bool("restart", false, "measure a correlator restart over a year of deploys instead (a few minutes)")
	services := flag.Int("services", 1000, "with -restart: services with a deploy a day for a year")
	flag.Parse()
	if *soak {
		if err := soakMain(*bin); err != nil {
			fmt.Fprintln(os.Stderr, "faultline-bench:", err)
			os.Exit(1)
		}
		return
	}
	if *natsServe != "" || *peerMode {
		if err := peerMain(*bin); err != nil {
			fmt.Fprintln(os.Stderr, "faultline-bench:", err)
			os.Exit(1)
		}
		return
	}
	if *restart {
		b, _ := filepath.Abs(*bin)
		if err := restartBench(b, *services); err != nil {
			fmt.Fprintln(os.Stderr, "faultline-bench:", err)
			os.Exit(1)
		}
		return
	}
	if *live {
		b, _ := filepath.Abs(*bin)
		if err := liveLatency(b); err != nil {
			fmt.Fprintln(os.Stderr, "faultline-bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*records, *gwRequests, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "faultline-bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name, value, baseline, ratio, note string
}

func run(records, gwRequests int, bin string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "faultline-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, _ = filepath.Abs(bin)

	fmt.Fprintln(os.Stderr, "starting local ClickHouse and embedded NATS ...")
	st, err := startLocal(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer st.stop()
	ch, ns, js := st.ch, st.ns, st.js

	msgs := records / perMsg
	fmt.Fprintf(os.Stderr, "building %d OTLP requests of %d records ...\n", msgs, perMsg)
	payloads := make([][]byte, msgs)
	var total int
	for i := range payloads {
		payloads[i] = otlptest.LogsRequest("r"+strconv.Itoa(i), perMsg)
		total += len(payloads[i])
	}
	var res []result
	add := func(r result) { res = append(res, r); fmt.Fprintf(os.Stderr, "  %s: %s\n", r.name, r.value) }

	// (a) The insert ceiling, in this process.
	chcfg := clickhouse.Config{Addr: []string{ch.Addr}, Database: "bench_ceiling", User: "default", DialTimeout: 5 * time.Second, MaxConns: 2}
	if err := clickhouse.Migrate(ctx, chcfg, nil); err != nil {
		return err
	}
	ceiling, ceilCPU, err := insertCeiling(ctx, chcfg, payloads, 100)
	if err != nil {
		return err
	}
	// The same at the worker's default batch size (50k rows): ClickHouse
	// pays per insert too, so this is the like-for-like baseline.
	c50 := chcfg
	c50.Database = "bench_ceiling50"
	if err := clickhouse.Migrate(ctx, c50, nil); err != nil {
		return err
	}
	ceiling50, _, err := insertCeiling(ctx, c50, payloads, 50)
	if err != nil {
		return err
	}
	add(result{name: "insert ceiling (pre-decoded rows, 100k-row inserts)", value: fmt.Sprintf("%.0f rows/s, %.2f CPU-us/row (client)", ceiling, ceilCPU)})
	rowRate, rowCPU, err := rowByRow(ctx, chcfg, payloads[:min(len(payloads), 200)])
	if err != nil {
		return err
	}
	add(result{name: "clickhouse-go row Append (the Collector exporter's way)", value: fmt.Sprintf("%.0f rows/s, %.2f CPU-us/row (client)", rowRate, rowCPU)})

	// (b) The worker, end to end.
	pubStart := time.Now()
	for i, p := range payloads {
		if _, err := js.Publish(ctx, "otel_logs", p); err != nil {
			return fmt.Errorf("fill stream, message %d: %w", i, err)
		}
	}
	pubRate := float64(records) / time.Since(pubStart).Seconds()
	add(result{name: "JetStream publish (filling the stream)", value: fmt.Sprintf("%.0f records/s, %.0f MB", pubRate, float64(total)/1e6)})
	wcfg := chcfg
	wcfg.Database = "bench_worker"
	if err := clickhouse.Migrate(ctx, wcfg, nil); err != nil {
		return err
	}
	wRate, wCPU, wRSS, err := runWorker(ctx, bin, ns.ClientURL(), ch.Addr, wcfg, records)
	if err != nil {
		return err
	}
	// The same again with detection off (no aggregates), from a fresh
	// consumer over the same stream into another database.
	ocfg := chcfg
	ocfg.Database = "bench_worker_nodetect"
	if err := clickhouse.Migrate(ctx, ocfg, nil); err != nil {
		return err
	}
	oRate, oCPU, _, err := runWorker(ctx, bin, ns.ClientURL(), ch.Addr, ocfg, records, "FAULTLINE_WORKER_AGGREGATES=false", "FAULTLINE_WORKER_CONSUMER=bench-nodetect", "FAULTLINE_WORKER_LEDGER_BUCKET=bench_nodetect")
	if err != nil {
		return err
	}
	res = append(res, result{
		name: "worker end to end (JetStream -> ClickHouse)", value: fmt.Sprintf("%.0f records/s", wRate),
		baseline: fmt.Sprintf("%.0f rows/s ceiling", ceiling), ratio: fmt.Sprintf("%.2f", wRate/ceiling), note: "target >= 0.70",
	})
	res = append(res, result{
		name: "worker end to end, like for like", value: fmt.Sprintf("%.0f records/s", wRate),
		baseline: fmt.Sprintf("%.0f rows/s ceiling, 50k-row inserts", ceiling50), ratio: fmt.Sprintf("%.2f", wRate/ceiling50), note: "the worker's batch size",
	})
	res = append(res, result{
		name: "worker with the log rule on (aggregates)", value: fmt.Sprintf("%.0f records/s, %.2f CPU-us/record", wRate, wCPU),
		baseline: fmt.Sprintf("%.0f records/s, %.2f us with it off", oRate, oCPU), ratio: fmt.Sprintf("%.2f", wRate/oRate), note: "target >= 0.90",
	})
	res = append(res, result{
		name: "worker CPU per record", value: fmt.Sprintf("%.2f us", wCPU),
		baseline: "2.30 us (Collector exporter, measured)", ratio: fmt.Sprintf("%.2f", wCPU/2.3), note: "target <= 1.0 us",
	})
	// The absolute figure drifts with the machine (+-30% here from run to
	// run); against pdata's own unmarshal of the same payloads, timed in
	// this process now, it does not. Measured on the machine the targets
	// were set on: pdata unmarshal 1.08 us and the Collector's ClickHouse
	// exporter 2.3 us per record, so the 1.0 us target is 0.93 of it.
	yard := unmarshalCPU(payloads[:min(len(payloads), 300)])
	res = append(res, result{
		name: "worker CPU per record, machine-independent", value: fmt.Sprintf("%.2f x pdata unmarshal", wCPU/yard),
		baseline: fmt.Sprintf("pdata unmarshal %.2f us/record now", yard), ratio: fmt.Sprintf("%.2f", wCPU/yard/2.13), note: "Collector 2.13 x; target <= 0.93 x",
	})
	res = append(res, result{
		name: "worker peak RSS", value: fmt.Sprintf("%.0f MB", wRSS),
		baseline: "200 MB target", ratio: fmt.Sprintf("%.2f", wRSS/200), note: "target <= 200 MB",
	})

	// (d) The correlator's detection state.
	heap, perAgg := detectorCost(10_000)
	res = append(res, result{
		name: "detection state, 10,000 (service, environment, version) keys", value: fmt.Sprintf("%.0f MB heap, %.2f CPU-us/aggregate", heap, perAgg),
		baseline: "3 h of one-minute aggregates per key", ratio: fmt.Sprintf("%.2f", heap/250), note: "share of a 250 MB correlator",
	})

	// (c) The gateway.
	gRate, gCPU, direct, err := runGateway(ctx, bin, ns.ClientURL(), js, payloads, gwRequests)
	if err != nil {
		return err
	}
	res = append(res, result{
		name: "gateway OTLP/HTTP -> JetStream", value: fmt.Sprintf("%.0f records/s, %.3f CPU-us/record", gRate, gCPU),
		baseline: fmt.Sprintf("%.0f records/s direct publish", direct), ratio: fmt.Sprintf("%.2f", gRate/direct), note: "target <= 0.3 CPU-us/record",
	})

	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tBASELINE (same run)\tRATIO\tNOTE")
	for _, r := range res {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.name, r.value, r.baseline, r.ratio, r.note)
	}
	return tw.Flush()
}

// unmarshalCPU is the CPU time pdata's protobuf unmarshal takes per
// record over payloads, the median of three passes.
func unmarshalCPU(payloads [][]byte) float64 {
	var us [3]float64
	for pass := range us {
		c0 := otlptest.CPUTime()
		n := 0
		for _, p := range payloads {
			ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(p)
			if err != nil {
				panic(err) // our own payloads
			}
			n += ld.LogRecordCount()
		}
		us[pass] = float64((otlptest.CPUTime() - c0).Microseconds()) / float64(n)
	}
	slices.Sort(us[:])
	return us[1]
}

// insertCeiling inserts the payloads' rows, decoded beforehand, in
// batches of per messages (per x 1000 rows).
func insertCeiling(ctx context.Context, cfg clickhouse.Config, payloads [][]byte, per int) (rate, cpuPerRow float64, err error) {
	w, err := clickhouse.NewTelemetryWriter(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer w.Close()
	var batches []*otlp.Batch
	for i := 0; i < len(payloads); i += per {
		b := otlp.NewBatch()
		for _, p := range payloads[i:min(i+per, len(payloads))] {
			if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, p); err != nil {
				return 0, 0, err
			}
		}
		batches = append(batches, b)
	}
	rows := 0
	c0, t0 := otlptest.CPUTime(), time.Now()
	for i, b := range batches {
		if err := w.Write(ctx, b, "ceiling-"+strconv.Itoa(i)); err != nil {
			return 0, 0, err
		}
		rows += b.Records()
	}
	el, cpu := time.Since(t0), otlptest.CPUTime()-c0
	return float64(rows) / el.Seconds(), float64(cpu.Microseconds()) / float64(rows), nil
}

func rowByRow(ctx context.Context, cfg clickhouse.Config, payloads [][]byte) (rate, cpuPerRow float64, err error) {
	conn, err := chgo.Open(&chgo.Options{Addr: cfg.Addr, Auth: chgo.Auth{Database: cfg.Database, Username: "default"}})
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	b := otlp.NewBatch()
	for _, p := range payloads {
		if _, err := b.Append(otlp.SignalLogs, otlp.FormatProtobuf, p); err != nil {
			return 0, 0, err
		}
	}
	l := &b.Logs
	src := &b.Src
	str := src.String
	c0, t0 := otlptest.CPUTime(), time.Now()
	for off := 0; off < l.Len(); off += 100_000 {
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO otel_logs (Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body, ResourceAttributes, ScopeName, ScopeVersion, ScopeAttributes, LogAttributes)")
		if err != nil {
			return 0, 0, err
		}
		for i := off; i < min(off+100_000, l.Len()); i++ {
			if err := batch.Append(time.Unix(0, l.Timestamp[i]), str(l.TraceId[i]), str(l.SpanId[i]), l.TraceFlags[i], str(l.SeverityText[i]), l.SeverityNumber[i],
				str(l.ServiceName[i]), str(l.Body[i]), toMap(src, &l.ResourceAttributes, i), str(l.ScopeName[i]), str(l.ScopeVersion[i]), toMap(src, &l.ScopeAttributes, i), toMap(src, &l.LogAttributes, i)); err != nil {
				return 0, 0, err
			}
		}
		if err := batch.Send(); err != nil {
			return 0, 0, err
		}
	}
	el, cpu := time.Since(t0), otlptest.CPUTime()-c0
	return float64(l.Len()) / el.Seconds(), float64(cpu.Microseconds()) / float64(l.Len()), nil
}

func toMap(src *otlp.Sources, a interface {
	Row(*otlp.Sources, int) [][2]string
}, i int) map[string]string {
	m := map[string]string{}
	for _, kv := range a.Row(src, i) {
		m[kv[0]] = kv[1]
	}
	return m
}

// runWorker runs `faultline worker` until every record is committed and
// returns its rate, CPU per record and peak RSS in MB.
func runWorker(ctx context.Context, bin, natsURL, chAddr string, cfg clickhouse.Config, records int, env ...string) (rate, cpuPerRecord, rssMB float64, err error) {
	cmd := exec.Command(filepath.Join(bin, "faultline"), "worker")
	admin := "127.0.0.1:0"
	prof := profile != "" && len(env) == 0 // the first, detection-on run
	if prof {
		port, err := chlocal.FreePort()
		if err != nil {
			return 0, 0, 0, err
		}
		admin = "127.0.0.1:" + strconv.Itoa(port)
	}
	cmd.Env = append(os.Environ(),
		"FAULTLINE_NATS_URL="+natsURL,
		"FAULTLINE_CLICKHOUSE_ADDR="+chAddr,
		"FAULTLINE_CLICKHOUSE_DATABASE="+cfg.Database,
		"FAULTLINE_ADMIN_LISTEN="+admin,
		"FAULTLINE_LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, env...)
	if prof {
		go func() {
			time.Sleep(time.Second)
			fetchProfile("http://"+admin+"/debug/pprof/profile?seconds=3", profile+".cpu.pprof")
		}()
		go func() {
			time.Sleep(2500 * time.Millisecond)
			fetchProfile("http://"+admin+"/debug/pprof/heap", profile+".heap.pprof")
		}()
	}
	cmd.Stderr = os.Stderr
	conn, err := chgo.Open(&chgo.Options{Addr: cfg.Addr, Auth: chgo.Auth{Database: cfg.Database, Username: "default"}})
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	// Let the merges of earlier runs' parts finish first: they compete
	// for the same two cores, and would favour whichever run goes last.
	for settle := time.Now(); time.Since(settle) < time.Minute; time.Sleep(200 * time.Millisecond) {
		var merges uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&merges); err != nil || merges == 0 {
			break
		}
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	var n uint64
	for time.Since(t0) < 10*time.Minute {
		if err := conn.QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&n); err != nil {
			return 0, 0, 0, err
		}
		if n >= uint64(records) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	el := time.Since(t0)
	rss := peakRSS(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if n != uint64(records) {
		return 0, 0, 0, fmt.Errorf("worker committed %d of %d records", n, records)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return float64(records) / el.Seconds(), float64(cpu.Microseconds()) / float64(records), rss, nil
}

// fetchProfile saves a pprof endpoint's answer to a file.
func fetchProfile(url, file string) {
	var resp *http.Response
	var err error
	for try := 0; try < 40; try++ { // the worker's admin port may not be up yet
		if resp, err = http.Get(url); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
	}
}

// peakRSS reads a process's own high-water resident set (VmHWM) in MB. The
// rusage of a child is no good for this: its ru_maxrss starts from the
// parent's resident set at fork, which here holds the whole test data.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// runGateway runs `faultline gateway` and sends it requests from 4
// clients; its CPU per record comes from the kernel. The baseline publishes
// the same bytes to JetStream directly.
func runGateway(ctx context.Context, bin, natsURL string, js jetstream.JetStream, payloads [][]byte, n int) (rate, cpuPerRecord, direct float64, err error) {
	n = min(n, len(payloads))
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if _, err := js.Publish(ctx, "otel_logs.direct", payloads[i]); err != nil {
			return 0, 0, 0, err
		}
	}
	direct = float64(n*perMsg) / time.Since(t0).Seconds()

	port, err := chlocal.FreePort()
	if err != nil {
		return 0, 0, 0, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(filepath.Join(bin, "faultline"), "gateway")
	cmd.Env = append(os.Environ(), "FAULTLINE_NATS_URL="+natsURL, "FAULTLINE_GATEWAY_LISTEN="+addr,
		"FAULTLINE_GATEWAY_GRPC_LISTEN=", "FAULTLINE_ADMIN_LISTEN=127.0.0.1:0", "FAULTLINE_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	url := "http://" + addr + "/v1/logs"
	for i := 0; ; i++ {
		if resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(payloads[0])); err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			return 0, 0, 0, fmt.Errorf("gateway did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	next := make(chan int, n)
	for i := 1; i < n; i++ { // 0 was the warm-up
		next <- i
	}
	close(next)
	t0 = time.Now()
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(payloads[i]))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("gateway answered %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	select {
	case err := <-errs:
		return 0, 0, 0, err
	default:
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	recs := float64(n * perMsg)
	return float64((n-1)*perMsg) / el.Seconds(), float64(cpu.Microseconds()) / recs, direct, nil
}

// local is the stack every benchmark mode runs on: a local ClickHouse and
// an embedded NATS server with faultline's streams.
type local struct {
	ch   *chlocal.Server
	ns   *server.Server
	nc   broker.Config
	conn *nats.Conn
	js   jetstream.JetStream
}

// startLocal starts the local stack with its data under dir.
func startLocal(ctx context.Context, bin, dir string) (*local, error) {
	l := &local{nc: broker.DefaultConfig()}
	var err error
	if l.ch, err = chlocal.Start(ctx, chlocal.Options{Bin: filepath.Join(bin, "faultline-clickhouse"), Dir: filepath.Join(dir, "ch")}); err != nil {
		return nil, err
	}
	l.nc.Listen = "127.0.0.1:0"
	if l.ns, err = broker.StartEmbedded(l.nc, filepath.Join(dir, "nats"), nil); err != nil {
		l.stop()
		return nil, err
	}
	if l.conn, err = broker.Connect(ctx, l.nc, l.ns.ClientURL(), "bench", nil); err != nil {
		l.stop()
		return nil, err
	}
	l.js, _ = jetstream.New(l.conn)
	if err := broker.Provision(ctx, l.js, broker.Streams(l.nc), nil); err != nil {
		l.stop()
		return nil, err
	}
	return l, nil
}

func (l *local) stop() {
	if l.conn != nil {
		l.conn.Close()
	}
	if l.ns != nil {
		l.ns.Shutdown()
	}
	if l.ch != nil {
		_ = l.ch.Stop()
	}
}

package main

// The soak: -soak pushes many log records (default 100M) through the whole
// system, gateway -> JetStream -> worker -> ClickHouse, each part its own
// process, and reports every interval (default 10M committed records) the
// throughput, CPU per record of each process and their resident sets, so a
// cost that grows with volume (a map that never shrinks, a token store,
// part counts in ClickHouse) shows as a trend rather than hiding in one
// average.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

var (
	soak            = flag.Bool("soak", false, "soak: push -soak-records log records through gateway, JetStream, worker and ClickHouse and report cost per interval")
	soakRecords     = flag.Int("soak-records", 100_000_000, "soak: log records in all")
	soakInterval    = flag.Int("soak-interval", 10_000_000, "soak: committed records per report line")
	soakSenders     = flag.Int("soak-senders", 4, "soak: concurrent OTLP/HTTP senders")
	soakMaxLag      = flag.Int("soak-max-lag", 1_000_000, "soak: most records accepted by the gateway but not yet in ClickHouse before the senders wait")
	soakStreamBytes = flag.Int64("soak-stream-bytes", 4<<30, "soak: max bytes of the TELEMETRY stream (older messages are discarded beyond it)")
)

// soakMain runs the soak.
func soakMain(bin string) error {
	if *soakInterval <= 0 || *soakRecords < *soakInterval {
		return fmt.Errorf("soak: -soak-interval (%d) must be positive and at most -soak-records (%d)", *soakInterval, *soakRecords)
	}
	if *soakRecords%perMsg != 0 {
		return fmt.Errorf("soak: -soak-records (%d) must be a multiple of %d (records per request)", *soakRecords, perMsg)
	}
	if *soakSenders <= 0 || *soakMaxLag <= 0 {
		return errors.New("soak: -soak-senders and -soak-max-lag must be positive")
	}
	b, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	return runSoak(b, *soakRecords, *soakInterval)
}

// soakProc is a process the soak watches.
type soakProc struct {
	name string
	pid  int
}

// sample is what the soak reads at a report line.
type sample struct {
	at        time.Time
	committed uint64
	cpu       []time.Duration // per soakProc, then this process (the load generator)
	rss       []float64       // MB, per soakProc
	parts     uint64          // active parts of otel_logs
	merged    uint64          // rows ClickHouse has merged so far (the MergedRows event)
}

func runSoak(bin string, records, interval int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "faultline-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "soak: %d records, a line every %d; data in %s\n", records, interval, dir)

	ch, err := chlocal.Start(ctx, chlocal.Options{Bin: filepath.Join(bin, "faultline-clickhouse"), Dir: filepath.Join(dir, "ch")})
	if err != nil {
		return err
	}
	defer ch.Stop()

	// NATS in a process of its own (so that its CPU and memory are its
	// own): this program again, with -nats-serve.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	port, err := chlocal.FreePort()
	if err != nil {
		return err
	}
	natsAddr := "127.0.0.1:" + strconv.Itoa(port)
	ncmd := exec.Command(self, "-nats-serve", filepath.Join(dir, "nats"))
	ncmd.Env = append(os.Environ(), "FAULTLINE_NATS_LISTEN="+natsAddr)
	nats, err := startChild("nats", ncmd)
	if err != nil {
		return err
	}
	defer nats.stop()
	natsURL := "nats://" + natsAddr
	if err := waitListening(natsAddr, 30*time.Second); err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	nc := broker.DefaultConfig()
	nc.TelemetryMaxBytes = *soakStreamBytes
	conn, err := broker.Connect(ctx, nc, natsURL, "soak", nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	js, _ := jetstream.New(conn)
	if err := broker.Provision(ctx, js, broker.Streams(nc), nil); err != nil {
		return err
	}
	cfg := clickhouse.Config{Addr: []string{ch.Addr}, Database: "faultline", User: "default", DialTimeout: 5 * time.Second, MaxConns: 2}
	if err := clickhouse.Migrate(ctx, cfg, nil); err != nil {
		return err
	}

	ports := map[string]int{}
	for _, k := range []string{"gw", "gwadmin", "wadmin"} {
		if ports[k], err = chlocal.FreePort(); err != nil {
			return err
		}
	}
	addr := func(k string) string { return "127.0.0.1:" + strconv.Itoa(ports[k]) }
	env := append(os.Environ(),
		"FAULTLINE_NATS_URL="+natsURL,
		"FAULTLINE_NATS_TELEMETRY_MAX_BYTES="+strconv.FormatInt(*soakStreamBytes, 10),
		"FAULTLINE_CLICKHOUSE_ADDR="+ch.Addr,
		"FAULTLINE_CLICKHOUSE_DATABASE="+cfg.Database,
		"FAULTLINE_LOG_LEVEL=warn",
	)
	wcmd := exec.Command(filepath.Join(bin, "faultline"), "worker")
	wcmd.Env = append(slices.Clip(env), "FAULTLINE_ADMIN_LISTEN="+addr("wadmin"))
	worker, err := startChild("worker", wcmd)
	if err != nil {
		return err
	}
	defer worker.stop()
	gcmd := exec.Command(filepath.Join(bin, "faultline"), "gateway")
	gcmd.Env = append(slices.Clip(env), "FAULTLINE_ADMIN_LISTEN="+addr("gwadmin"), "FAULTLINE_GATEWAY_LISTEN="+addr("gw"),
		"FAULTLINE_GATEWAY_GRPC_LISTEN=", "FAULTLINE_GATEWAY_RETRY_AFTER=1s")
	gateway, err := startChild("gateway", gcmd)
	if err != nil {
		return err
	}
	defer gateway.stop()
	if err := waitListening(addr("gw"), 30*time.Second); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	procs := []soakProc{{"gateway", gateway.cmd.Process.Pid}, {"worker", worker.cmd.Process.Pid}, {"nats", nats.cmd.Process.Pid}, {"clickhouse", ch.Pid()}}

	gen, err := newSoakGen(8)
	if err != nil {
		return err
	}
	db, err := chgo.Open(&chgo.Options{Addr: cfg.Addr, Auth: chgo.Auth{Database: cfg.Database, Username: "default"}})
	if err != nil {
		return err
	}
	defer db.Close()

	var accepted, committed atomic.Uint64
	var next atomic.Int64
	// stopping ends the run early (SIGINT or SIGTERM): the senders take
	// no new request, the pipeline drains, and the intervals done so far
	// are judged.
	var stopping atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	requests := int64(records / perMsg)
	errc := make(chan error, *soakSenders)
	var wg sync.WaitGroup
	url := "http://" + addr("gw") + "/v1/logs"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *soakSenders}, Timeout: time.Minute}
	maxLag := uint64(*soakMaxLag)
	for s := 0; s < *soakSenders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs := gen.buffers()
			for ctx.Err() == nil && !stopping.Load() {
				k := next.Add(1) - 1
				if k >= requests {
					return
				}
				// Flow control: JetStream keeps only -soak-stream-bytes,
				// so the senders must not run further ahead of the
				// worker than that.
				for accepted.Load() > committed.Load()+maxLag && ctx.Err() == nil {
					time.Sleep(20 * time.Millisecond)
				}
				body := gen.request(bufs, k)
				if err := postRetry(ctx, client, url, body); err != nil {
					errc <- fmt.Errorf("request %d: %w", k, err)
					cancel()
					return
				}
				accepted.Add(perMsg)
			}
		}()
	}

	count := func() (uint64, error) {
		var n uint64
		err := db.QueryRow(ctx, "SELECT count() FROM otel_logs").Scan(&n)
		return n, err
	}
	take := func(n uint64) sample {
		s := sample{at: time.Now(), committed: n}
		for _, p := range procs {
			s.cpu = append(s.cpu, time.Duration(procCPU(p.pid)*float64(time.Microsecond)))
			s.rss = append(s.rss, procRSS(p.pid))
		}
		s.cpu = append(s.cpu, otlptest.CPUTime())
		_ = db.QueryRow(ctx, "SELECT count() FROM system.parts WHERE active AND database = currentDatabase() AND table = 'otel_logs'").Scan(&s.parts)
		_ = db.QueryRow(ctx, "SELECT sum(value) FROM system.events WHERE event = 'MergedRows'").Scan(&s.merged)
		return s
	}
	samples := []sample{take(0)}
	printHeader(procs)
	boundary := uint64(interval)
	prof := profile != ""
	deadline := time.Now().Add(6 * time.Hour)
	var drained atomic.Bool // when stopping: the senders have finished
	for {
		n, err := count()
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("count rows: %w", err)
		}
		committed.Store(n)
		for _, c := range []*soakChild{gateway, worker, nats} {
			if err == nil {
				err = c.alive()
			}
		}
		select {
		case err = <-errc:
		default:
		}
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		select {
		case <-sig:
			if !stopping.Load() {
				fmt.Fprintln(os.Stderr, "soak: stopping early; draining what the gateway accepted")
				if prof {
					soakProfiles(addr("wadmin"), fmt.Sprintf("%s.%dM", profile, n/1_000_000))
				}
				stopping.Store(true)
				go func() { wg.Wait(); drained.Store(true) }()
			}
		default:
		}
		if drained.Load() && n >= accepted.Load() {
			// The partial interval is printed, not judged.
			printInterval(procs, samples[len(samples)-1], take(n), accepted.Load())
			break
		}
		if !stopping.Load() && (n >= boundary || n >= uint64(records)) {
			s := take(n)
			samples = append(samples, s)
			printInterval(procs, samples[len(samples)-2], s, accepted.Load())
			line := len(samples) - 1
			last := n >= uint64(records)
			// The worker's profiles in the second interval and the
			// last: a cost that grows with volume shows as a difference.
			if prof && (line == 1 || (!last && n+uint64(interval) >= uint64(records))) {
				go soakProfiles(addr("wadmin"), fmt.Sprintf("%s.%dM", profile, n/1_000_000))
			}
			for boundary <= n {
				boundary += uint64(interval)
			}
			if last {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			return fmt.Errorf("soak: %d of %d records committed after 6 hours", n, records)
		}
		time.Sleep(250 * time.Millisecond)
	}
	wg.Wait()
	// Nothing lost, nothing doubled: every accepted record, once. Wait a
	// moment for late duplicates to show if there were any.
	time.Sleep(3 * time.Second)
	n, err := count()
	if err != nil {
		return err
	}
	fmt.Println()
	summarize(procs, samples)
	var dead uint64
	if s, err := js.Stream(ctx, nc.DeadLetterStream); err == nil {
		if info, err := s.Info(ctx); err == nil {
			dead = info.State.Msgs
		}
	}
	fmt.Printf("accepted %d records, ClickHouse holds %d, dead letters %d: ", accepted.Load(), n, dead)
	if n != accepted.Load() || (n != uint64(records) && !stopping.Load()) || dead != 0 {
		fmt.Println("MISMATCH")
		return fmt.Errorf("soak: accepted %d, committed %d of %d, %d dead letters", accepted.Load(), n, records, dead)
	}
	fmt.Println("exact")
	return nil
}

// postRetry sends one OTLP request until the gateway stores it, retrying
// 429 and 503 after Retry-After and connection errors after a second, as
// a Collector's exporter does.
func postRetry(ctx context.Context, client *http.Client, url string, body []byte) error {
	for try := 0; ; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := client.Do(req)
		wait := time.Second
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				return nil
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
					wait = time.Duration(s) * time.Second
				}
			default:
				return fmt.Errorf("gateway answered %s: %s", resp.Status, bytes.TrimSpace(msg))
			}
		}
		if try == 600 {
			return fmt.Errorf("gateway did not take the request after %d tries (last: %v)", try, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// soakGen makes unique, realistic OTLP log requests cheaply: a few
// requests are encoded once (one per service), and each request sent is a
// copy of one of them with its records' bodies and timestamps patched in
// place. Bodies start with a fixed-width request number, so every record
// of the run is unique (and so is every request's Nats-Msg-Id).
type soakGen struct {
	tmpl []soakTemplate
}

type soakTemplate struct {
	body []byte
	ids  []int // offsets of the request number in each body
	ts   []int // offsets of the fixed64 timestamps (time and observed time)
	rec  []int // the record each of ts belongs to
}

// idPlaceholder opens every record's body in a template; a request writes
// its number over it.
const idPlaceholder = "ZZZZZZZZZZZ"

func newSoakGen(services int) (*soakGen, error) {
	g := &soakGen{}
	base := uint64(otlptest.Base.UnixNano())
	for s := 0; s < services; s++ {
		ld := otlptest.Logs(idPlaceholder, perMsg)
		svc := fmt.Sprintf("svc-%02d", s)
		ra := ld.ResourceLogs().At(0).Resource().Attributes()
		ra.PutStr("service.name", svc)
		ra.PutStr("service.instance.id", svc+"-7d9f8b6c5-x2x7q")
		ra.PutStr("k8s.pod.name", svc+"-7d9f8b6c5-x2x7q")
		body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
		if err != nil {
			return nil, err
		}
		t := soakTemplate{body: body}
		for off := 0; ; {
			i := bytes.Index(body[off:], []byte(idPlaceholder+"-"))
			if i < 0 {
				break
			}
			t.ids = append(t.ids, off+i)
			off += i + len(idPlaceholder)
		}
		// Record i's timestamps are Base + i ms: find each value's two
		// fixed64 encodings.
		rec := make(map[uint64]int, perMsg)
		for i := 0; i < perMsg; i++ {
			rec[base+uint64(i)*uint64(time.Millisecond)] = i
		}
		for off := 0; off+8 <= len(body); off++ {
			if i, ok := rec[binary.LittleEndian.Uint64(body[off:])]; ok {
				t.ts = append(t.ts, off)
				t.rec = append(t.rec, i)
			}
		}
		if len(t.ids) != perMsg || len(t.ts) != 2*perMsg {
			return nil, fmt.Errorf("soak: template %d: found %d bodies and %d timestamps, want %d and %d", s, len(t.ids), len(t.ts), perMsg, 2*perMsg)
		}
		g.tmpl = append(g.tmpl, t)
	}
	return g, nil
}

// buffers returns a sender's own copies of the templates.
func (g *soakGen) buffers() [][]byte {
	b := make([][]byte, len(g.tmpl))
	for i, t := range g.tmpl {
		b[i] = bytes.Clone(t.body)
	}
	return b
}

// request patches request k into one of bufs and returns it: the services
// take turns, and each service's requests follow one another a second
// apart in event time.
func (g *soakGen) request(bufs [][]byte, k int64) []byte {
	n := int64(len(g.tmpl))
	t, b := &g.tmpl[k%n], bufs[k%n]
	var id [len(idPlaceholder)]byte
	v := k
	for i := len(id) - 1; i >= 0; i-- {
		id[i] = byte('0' + v%10)
		v /= 10
	}
	for _, off := range t.ids {
		copy(b[off:], id[:])
	}
	base := uint64(otlptest.Base.Add(time.Duration(k/n) * time.Second).UnixNano())
	for j, off := range t.ts {
		binary.LittleEndian.PutUint64(b[off:], base+uint64(t.rec[j])*uint64(time.Millisecond))
	}
	return b
}

// procRSS is a process's current resident set (VmRSS) in MB.
func procRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func printHeader(procs []soakProc) {
	var b strings.Builder
	fmt.Fprintf(&b, "%-11s %9s %6s %7s", "records", "rec/s", "parts", "merged")
	for _, p := range procs {
		fmt.Fprintf(&b, " %10s", p.name)
	}
	fmt.Fprintf(&b, " %10s %10s  RSS MB:", "loadgen", "total")
	for _, p := range procs {
		fmt.Fprintf(&b, " %10s", p.name)
	}
	fmt.Println(b.String())
	fmt.Println(strings.Repeat(" ", 37) + "CPU-us per record")
}

func printInterval(procs []soakProc, a, b sample, accepted uint64) {
	n := float64(b.committed - a.committed)
	var s strings.Builder
	// merged: rows ClickHouse merged per record committed (write
	// amplification of the MergeTree).
	fmt.Fprintf(&s, "%-11d %9.0f %6d %7.2f", b.committed, n/b.at.Sub(a.at).Seconds(), b.parts, float64(b.merged-a.merged)/n)
	var total time.Duration
	for i := range b.cpu {
		d := b.cpu[i] - a.cpu[i]
		total += d
		fmt.Fprintf(&s, " %10.3f", float64(d.Microseconds())/n)
	}
	fmt.Fprintf(&s, " %10.3f         ", float64(total.Microseconds())/n)
	for i := range procs {
		fmt.Fprintf(&s, " %10.0f", b.rss[i])
	}
	fmt.Fprintf(&s, "   (accepted %d)", accepted)
	fmt.Println(s.String())
}

// summarize compares the last interval with the second (the first holds
// start-up and warm-up): throughput and CPU per record within 10%, and
// the faultline processes' resident sets within 10% or 20 MB.
func summarize(procs []soakProc, s []sample) {
	if len(s) < 4 {
		fmt.Println("flat: too few intervals to compare (need three or more)")
		return
	}
	rate := func(i int) float64 {
		return float64(s[i].committed-s[i-1].committed) / s[i].at.Sub(s[i-1].at).Seconds()
	}
	cpu := func(i int) float64 {
		var d time.Duration
		for j := range s[i].cpu {
			d += s[i].cpu[j] - s[i-1].cpu[j]
		}
		return float64(d.Microseconds()) / float64(s[i].committed-s[i-1].committed)
	}
	last := len(s) - 1
	within := func(a, b, tol float64) bool { return b >= a*(1-tol) && b <= a*(1+tol) }
	verdict := func(ok bool) string {
		if ok {
			return "flat"
		}
		return "NOT FLAT"
	}
	r2, rl, c2, cl := rate(2), rate(last), cpu(2), cpu(last)
	fmt.Printf("throughput: second interval %.0f records/s, last %.0f (%.2f x): %s\n", r2, rl, rl/r2, verdict(within(r2, rl, 0.10)))
	fmt.Printf("CPU per record, all processes: second interval %.3f us, last %.3f (%.2f x): %s\n", c2, cl, cl/c2, verdict(within(c2, cl, 0.10)))
	for i, p := range procs {
		a, b := s[2].rss[i], s[last].rss[i]
		note := "(not judged: ClickHouse and NATS size their caches to the data)"
		if p.name == "gateway" || p.name == "worker" {
			note = verdict(b <= a+max(20, a*0.10))
		}
		fmt.Printf("RSS %s: second interval %.0f MB, last %.0f MB: %s\n", p.name, a, b, note)
	}
}

// soakProfiles saves a 10-second CPU profile and a heap profile of the
// worker.
func soakProfiles(admin, prefix string) {
	fetchProfile("http://"+admin+"/debug/pprof/heap", prefix+".heap.pprof")
	fetchProfile("http://"+admin+"/debug/pprof/profile?seconds=10", prefix+".cpu.pprof")
	fmt.Fprintf(os.Stderr, "soak: worker profiles in %s.{cpu,heap}.pprof\n", prefix)
}

// waitListening waits until addr accepts TCP connections.
func waitListening(addr string, timeout time.Duration) error {
	for t0 := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Since(t0) > timeout {
			return fmt.Errorf("%s not listening after %s: %w", addr, timeout, err)
		}
	}
}

// soakChild is a process the soak started; exited is closed when it ends.
type soakChild struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startChild starts c, tied to this process's life.
func startChild(name string, c *exec.Cmd) (*soakChild, error) {
	c.Stderr = os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ch := &soakChild{name: name, cmd: c, exited: make(chan struct{})}
	go func() { _ = c.Wait(); close(ch.exited) }()
	return ch, nil
}

// stop asks the child to stop and waits for it, killing it after 30
// seconds.
func (c *soakChild) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// alive is an error when the child has ended.
func (c *soakChild) alive() error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s exited: %v", c.name, c.cmd.ProcessState)
	default:
		return nil
	}
}

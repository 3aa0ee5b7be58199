package natstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
)

// A Cluster is a JetStream cluster of real nats-server processes on
// loopback, each with its own store directory, for tests that kill servers
// the way a crash or a lost machine does. The binary is the nats-server
// release go.mod requires, built by make into bin/nats-server.
type Cluster struct {
	t     testing.TB
	bin   string
	Nodes []*Node
}

// A Node is one server of a Cluster.
type Node struct {
	Name       string // server_name, as JetStream reports leaders
	ClientURL  string // nats://127.0.0.1:port
	MonitorURL string // http://127.0.0.1:port (/healthz, /jsz)
	conf       string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *tail
}

// ServerBin finds the nats-server binary: $FAULTLINE_NATS_SERVER_BIN (set
// by make), else bin/nats-server at the module root.
func ServerBin() (string, error) {
	if b := os.Getenv("FAULTLINE_NATS_SERVER_BIN"); b != "" {
		return b, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "nats-server"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// StartCluster starts n servers forming one JetStream cluster and waits
// until every one reports JetStream healthy with a meta leader elected.
// The servers are killed when the test ends. It fails the test (rather than
// skipping it) when the binary is missing: make test builds it.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, err := ServerBin()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("natstest: %v (make test builds it: make bin/nats-server)", err)
	}
	c := &Cluster{t: t, bin: bin}
	routes := make([]string, n)
	ports := make([][3]int, n)
	for i := range n {
		for j := range 3 {
			ports[i][j] = freePort(t)
		}
		routes[i] = fmt.Sprintf("%q", "nats-route://127.0.0.1:"+strconv.Itoa(ports[i][2]))
	}
	for i := range n {
		dir := t.TempDir()
		nd := &Node{
			Name:       fmt.Sprintf("n%d", i+1),
			ClientURL:  "nats://127.0.0.1:" + strconv.Itoa(ports[i][0]),
			MonitorURL: "http://127.0.0.1:" + strconv.Itoa(ports[i][1]),
			conf:       filepath.Join(dir, "nats.conf"),
		}
		// Whole OTLP requests travel as single messages, as on the
		// embedded server (8 MiB).
		conf := fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
max_payload: 8388608
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 64GB
}
cluster {
  name: "faultline-test"
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, nd.Name, ports[i][0], ports[i][1], filepath.Join(dir, "store"), ports[i][2], strings.Join(routes, ", "))
		if err := os.WriteFile(nd.conf, []byte(conf), 0o644); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	t.Cleanup(func() {
		for i := range c.Nodes {
			c.Kill(i)
		}
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("nats-server %s said (last lines):\n%s", nd.Name, nd.out.String())
			}
		}
	})
	for i := range c.Nodes {
		c.start(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range c.Nodes {
		if err := c.WaitHealthy(ctx, i); err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
	return c
}

// URL lists every server's client URL, comma separated, as
// FAULTLINE_NATS_URL takes them.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		urls[i] = nd.ClientURL
	}
	return strings.Join(urls, ",")
}

func (c *Cluster) start(i int) {
	nd := c.Nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.out == nil {
		nd.out = &tail{}
	}
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		// Pdeathsig fires when the thread that started the child exits:
		// this goroutine keeps its thread until the child is gone, so a
		// test binary killed on timeout takes its servers with it.
		runtime.LockOSThread()
		cmd := exec.Command(c.bin, "-c", nd.conf)
		cmd.Stdout, cmd.Stderr = nd.out, nd.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		nd.cmd = cmd
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		c.t.Fatalf("natstest: start %s: %v", nd.Name, err)
	}
	nd.done = done
}

// Kill ends server i with SIGKILL, as a crash would, and waits until it is
// gone. Killing a stopped server does nothing.
func (c *Cluster) Kill(i int) {
	nd := c.Nodes[i]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil {
		return
	}
	_ = nd.cmd.Process.Kill()
	<-nd.done
	nd.cmd = nil
}

// Restart starts killed server i again on its ports and store, and waits
// until it reports JetStream healthy (caught up with its peers).
func (c *Cluster) Restart(ctx context.Context, i int) error {
	c.start(i)
	return c.WaitHealthy(ctx, i)
}

// WaitHealthy waits until server i answers /healthz with 200: JetStream is
// enabled, a meta leader is known and its streams and consumers are current.
func (c *Cluster) WaitHealthy(ctx context.Context, i int) error {
	nd := c.Nodes[i]
	var last string
	for {
		resp, err := http.Get(nd.MonitorURL + "/healthz")
		if err == nil {
			b := make([]byte, 512)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b[:n])))
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats-server %s not healthy: %s", nd.Name, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// MetaLeader returns the index of the server leading the JetStream meta
// group, as the running servers' /jsz reports it.
func (c *Cluster) MetaLeader() (int, error) {
	for _, nd := range c.Nodes {
		resp, err := http.Get(nd.MonitorURL + "/jsz")
		if err != nil {
			continue
		}
		var jsz struct {
			Meta *struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err != nil || jsz.Meta == nil || jsz.Meta.Leader == "" {
			continue
		}
		if i := c.Index(jsz.Meta.Leader); i >= 0 {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no server reports a meta leader")
}

// Index returns the index of the server named name, -1 if none.
func (c *Cluster) Index(name string) int {
	for i, nd := range c.Nodes {
		if nd.Name == name {
			return i
		}
	}
	return -1
}

// Connect opens a client on the cluster, closed when the test ends, and
// returns it with settings that replicate streams on every server.
func (c *Cluster) Connect(ctx context.Context, t testing.TB) (broker.Config, jetstream.JetStream) {
	t.Helper()
	bc := broker.DefaultConfig()
	bc.URL, bc.Replicas = c.URL(), len(c.Nodes)
	nc, js, err := dial(ctx, bc, bc.URL)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(nc.Close)
	return bc, js
}

// Output returns the last lines server i wrote.
func (c *Cluster) Output(i int) string { return c.Nodes[i].out.String() }

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail keeps the last 64 KiB a process wrote.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 64<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-64<<10:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// StreamLeader returns the index of the server leading stream name, as
// JetStream's stream info reports it.
func (c *Cluster) StreamLeader(ctx context.Context, js jetstream.JetStream, name string) (int, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return -1, fmt.Errorf("stream %s: %w", name, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return -1, fmt.Errorf("stream %s has no leader", name)
	}
	i := c.Index(info.Cluster.Leader)
	if i < 0 {
		return -1, fmt.Errorf("stream %s: leader %q is not in the cluster", name, info.Cluster.Leader)
	}
	return i, nil
}

// StreamState returns the messages and last sequence of stream name in
// server i's own replica, from its /jsz: a restarted server that caught up
// reports what its peers do.
func (c *Cluster) StreamState(i int, name string) (msgs, lastSeq uint64, err error) {
	resp, err := http.Get(c.Nodes[i].MonitorURL + "/jsz?streams=true")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name  string `json:"name"`
				State struct {
					Msgs    uint64 `json:"messages"`
					LastSeq uint64 `json:"last_seq"`
				} `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return 0, 0, fmt.Errorf("%s /jsz: %w", c.Nodes[i].Name, err)
	}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			if s.Name == name {
				return s.State.Msgs, s.State.LastSeq, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("%s holds no replica of stream %s", c.Nodes[i].Name, name)
}

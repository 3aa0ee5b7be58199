package chlocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Options say how to start a local server.
type Options struct {
	Bin      string    // the faultline-clickhouse binary
	Dir      string    // data directory
	TCPPort  int       // 0 picks a free port
	HTTPPort int       // 0 picks a free port
	Output   io.Writer // the server's stdout and stderr; nil discards
	// ReadyTimeout bounds the wait for the native port to answer. Default 2m:
	// a cold start maps the 560 MB library and loads existing tables.
	ReadyTimeout time.Duration
	// Restart brings the server back (same ports, same data) when it exits
	// by itself, as a service manager would, after RestartDelay (default
	// 500ms).
	Restart      bool
	RestartDelay time.Duration
	// Cluster, when set, defines a cluster of that name in remote_servers:
	// one shard whose one replica is this server. Distributed tables over
	// it then run on one machine. There is no Keeper, so ON CLUSTER DDL
	// and Replicated engines still do not.
	Cluster string
	// Topology, when set (instead of Cluster), is the whole cluster this
	// server is a node of; StartCluster fills it in for each node.
	Topology *Topology
	// QueryLog keeps system.query_log and system.part_log, which the
	// embedded defaults leave out, for benchmarks that read them.
	QueryLog bool
}

// Server is a running local ClickHouse.
type Server struct {
	Addr     string // native protocol, host:port
	HTTPAddr string

	o         Options
	tcp, http int
	confDir   string // working directory holding config.xml; "" for none
	tail      *tail

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process exits
	exitErr  error
	stopping bool
	done     chan struct{} // closed when the server is stopped for good
	restarts int
}

// Start spawns the launcher and returns once the native port answers
// SELECT 1. With free ports (0), a port lost to another process between
// choosing and binding is retried with new ports.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.RestartDelay <= 0 {
		o.RestartDelay = 500 * time.Millisecond
	}
	if _, err := os.Stat(o.Bin); err != nil {
		return nil, fmt.Errorf("local clickhouse launcher %q: %w (build it with make bin/faultline-clickhouse)", o.Bin, err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(ctx, o)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if (o.TCPPort != 0 && o.HTTPPort != 0) || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, o Options) (*Server, error) {
	// Absolute, because a cluster config changes the launcher's working
	// directory.
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("local clickhouse: data dir: %w", err)
	}
	o.Dir = dir
	s := &Server{o: o, tcp: o.TCPPort, http: o.HTTPPort, tail: &tail{}, done: make(chan struct{})}
	if s.tcp == 0 {
		if s.tcp, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if s.http == 0 {
		if s.http, err = FreePort(); err != nil {
			return nil, err
		}
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcp))
	s.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.http))
	switch {
	case o.Topology != nil:
		top := *o.Topology
		top.QueryLog = top.QueryLog || o.QueryLog
		if s.confDir, err = writeConfig(o.Dir, top); err != nil {
			return nil, err
		}
	case o.Cluster != "" || o.QueryLog:
		top := Topology{Name: o.Cluster, InternalReplication: true, QueryLog: o.QueryLog}
		if o.Cluster != "" {
			top.Shards = [][]string{{s.Addr}}
		}
		if s.confDir, err = writeConfig(o.Dir, top); err != nil {
			return nil, err
		}
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, o.ReadyTimeout); err != nil {
		s.Stop()
		return nil, err
	}
	go s.supervise()
	return s, nil
}

func (s *Server) launch() error {
	cmd := exec.Command(s.o.Bin,
		"-path", s.o.Dir,
		"-listen-host", "127.0.0.1",
		"-tcp-port", strconv.Itoa(s.tcp),
		"-http-port", strconv.Itoa(s.http))
	cmd.Dir = s.confDir
	w := io.MultiWriter(s.o.Output, s.tail)
	cmd.Stdout, cmd.Stderr = w, w
	// The server must not outlive its parent, even one killed with -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start local clickhouse: %w", err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	return nil
}

// supervise restarts the server when it exits by itself (Restart), and
// otherwise marks it done.
func (s *Server) supervise() {
	for {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		<-exited
		s.mu.Lock()
		stopping, err := s.stopping, s.exitErr
		s.mu.Unlock()
		if stopping || !s.o.Restart {
			close(s.done)
			return
		}
		fmt.Fprintf(s.o.Output, "local clickhouse exited unexpectedly (%v); restarting on %s. Its last output:\n%s\n", err, s.Addr, s.tail.String())
		time.Sleep(s.o.RestartDelay)
		if err := s.launch(); err != nil {
			fmt.Fprintf(s.o.Output, "local clickhouse: restart failed: %v\n", err)
			close(s.done)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.o.ReadyTimeout)
		err = s.waitReady(ctx, s.o.ReadyTimeout)
		cancel()
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
		if err != nil {
			fmt.Fprintf(s.o.Output, "local clickhouse: restart failed: %v\n", err)
		}
	}
}

// Restarts is how many times the server was brought back after exiting by
// itself.
func (s *Server) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.Addr},
		DialTimeout: time.Second,
	})
	if err != nil {
		return fmt.Errorf("local clickhouse: %w", err)
	}
	defer conn.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		err = conn.Exec(qctx, "SELECT 1")
		qcancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("local clickhouse exited before it was ready: %v\n%s", s.exitErr, s.tail.String())
		case <-ctx.Done():
			return fmt.Errorf("local clickhouse on %s not ready after %s: %w", s.Addr, timeout, err)
		case <-tick.C:
		}
	}
}

// Pid is the server process's id (the current one, after a restart), so
// a benchmark can read its CPU time and resident set from /proc.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Done is closed when the server has stopped for good.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop asks the server to shut down cleanly and waits for it; after 30
// seconds it kills the process.
func (s *Server) Stop() error {
	s.mu.Lock()
	s.stopping = true
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		return errors.New("local clickhouse did not stop within 30s; killed")
	}
	return nil
}

// Kill ends the server process abruptly (SIGKILL), as a crash would; with
// Restart it comes back.
func (s *Server) Kill() error {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last 16 KB a server printed, for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 16<<10 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-16<<10:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

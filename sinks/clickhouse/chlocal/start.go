package chlocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
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
}

// Server is a running local ClickHouse.
type Server struct {
	Addr     string // native protocol, host:port
	HTTPAddr string
	cmd      *exec.Cmd
	done     chan struct{}
	err      error
}

// Start spawns the launcher and returns once the native port answers
// SELECT 1. With free ports (0), a port lost to another process between
// choosing and binding is retried with new ports.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Minute
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
	tcp, http := o.TCPPort, o.HTTPPort
	var err error
	if tcp == 0 {
		if tcp, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if http == 0 {
		if http, err = FreePort(); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(o.Bin,
		"-path", o.Dir,
		"-listen-host", "127.0.0.1",
		"-tcp-port", strconv.Itoa(tcp),
		"-http-port", strconv.Itoa(http))
	cmd.Stdout, cmd.Stderr = o.Output, o.Output
	// The server must not outlive its parent, even one killed with -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start local clickhouse: %w", err)
	}
	s := &Server{
		Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp)),
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(http)),
		cmd:      cmd,
		done:     make(chan struct{}),
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, o.ReadyTimeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
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
		case <-s.done:
			return fmt.Errorf("local clickhouse exited before it was ready: %v", s.err)
		case <-ctx.Done():
			return fmt.Errorf("local clickhouse on %s not ready after %s: %w", s.Addr, timeout, err)
		case <-tick.C:
		}
	}
}

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop asks the server to shut down cleanly and waits for it; after 30
// seconds it kills the process.
func (s *Server) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		return errors.New("local clickhouse did not stop within 30s; killed")
	}
	return nil
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

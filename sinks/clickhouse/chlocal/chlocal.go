// Package chlocal runs a real ClickHouse server on this machine without a
// ClickHouse installation: the ClickHouse engine shipped as libchdb.so (npm
// package @chdb/lib-linux-x64-gnu) is driven through chdb_query_cmdline,
// which behaves like clickhouse-local. Given listen ports and the queries
// "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP" it serves the native
// protocol and HTTP until its query returns.
//
// The package has two halves. Serve is the launcher: it runs inside the
// faultline-clickhouse binary, built with -tags chdb so that nothing else
// links the 560 MB library. Start is the parent side: it spawns that binary
// on free loopback ports and waits until the native port answers a query.
// make run and the integration tests use Start; production deployments point
// faultline at their own ClickHouse server instead. StartCluster starts
// several such servers as one cluster (shards x replicas), for the tests of
// cluster mode's Distributed tables.
//
// To keep the server alive, the launcher's last query reads a named pipe in
// the data directory. Reading a FIFO blocks without using CPU, and writing to
// it ends the query, so a signal turns into a clean return from the engine
// (tables flushed, parts finalised) rather than a killed process.
package chlocal

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
)

// ServeOptions configure the launcher.
type ServeOptions struct {
	Dir        string // data directory; survives restarts
	ListenHost string // default 127.0.0.1
	TCPPort    int    // native protocol
	HTTPPort   int
}

// controlFile is the FIFO whose read keeps the server running.
const controlFile = "faultline-control.fifo"

// Serve runs ClickHouse in this process until SIGTERM or SIGINT.
func Serve(o ServeOptions) error {
	if !Available {
		return run(nil)
	}
	if o.Dir == "" || o.TCPPort <= 0 || o.HTTPPort <= 0 {
		return errors.New("chlocal: data dir, tcp port and http port are required")
	}
	if o.ListenHost == "" {
		o.ListenHost = "127.0.0.1"
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("chlocal: data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("chlocal: create data dir: %w", err)
	}
	fifo := filepath.Join(dir, controlFile)
	_ = os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return fmt.Errorf("chlocal: create control pipe: %w", err)
	}
	defer os.Remove(fifo)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		// Opening for write blocks until the engine reads the pipe, which
		// it does once the listeners are up; then EOF ends its query.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
	}()

	// The path is quoted for a SQL string literal; it comes from our own
	// flags, but quote it properly anyway.
	q := "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
		"SELECT count() FROM file(" + sqlString(fifo) + ", 'LineAsString') FORMAT Null"
	args := []string{
		"clickhouse",
		"--path=" + dir,
		"--listen_host=" + o.ListenHost,
		"--tcp_port=" + strconv.Itoa(o.TCPPort),
		"--http_port=" + strconv.Itoa(o.HTTPPort),
		"--multiquery",
		"--query=" + q,
	}
	if err := run(args); err != nil {
		return fmt.Errorf("chlocal: clickhouse: %w", err)
	}
	return nil
}

func sqlString(s string) string {
	b := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '\''))
}

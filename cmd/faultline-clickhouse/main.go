// Command faultline-clickhouse runs a local ClickHouse server from libchdb
// for development and tests. Build it with -tags chdb (make does); production
// uses a real ClickHouse server instead.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chlocal"
)

func main() {
	var o chlocal.ServeOptions
	flag.StringVar(&o.Dir, "path", ".data/clickhouse", "data directory")
	flag.StringVar(&o.ListenHost, "listen-host", "127.0.0.1", "address to listen on")
	flag.IntVar(&o.TCPPort, "tcp-port", 9000, "native protocol port")
	flag.IntVar(&o.HTTPPort, "http-port", 8123, "HTTP port")
	flag.Parse()
	if err := chlocal.Serve(o); err != nil {
		fmt.Fprintln(os.Stderr, "faultline-clickhouse:", err)
		os.Exit(1)
	}
}

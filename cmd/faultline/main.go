// Command faultline answers "which change broke production?": it reads
// OpenTelemetry logs and metrics and deploy and incident events from NATS
// JetStream, pins incidents on the deploys that caused them, and writes
// enriched rows to ClickHouse.
//
// Usage:
//
//	faultline run       everything in one process (embedded NATS and local ClickHouse by default)
//	faultline gateway   OTLP/HTTP, OTLP/gRPC and event endpoints into JetStream
//	faultline worker    consume OTLP from JetStream into ClickHouse; run as many as needed
//	faultline correlator detect incidents and pin them on deploys; run one
//	faultline dora      the four DORA keys per environment and service
//	faultline replay    send the reference (or the realistic) scenario through a gateway
//	faultline migrate   apply the ClickHouse schema and exit
//	faultline config    list every setting (environment variables)
//	faultline version   print the version
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "faultline:", err)
		os.Exit(1)
	}
}

func usage() string {
	return `usage: faultline <command>

commands:
  run       run everything in one process (embedded NATS and local ClickHouse unless configured)
  gateway   serve OTLP/HTTP, OTLP/gRPC and the event endpoints into JetStream
  worker    consume OTLP from JetStream into ClickHouse (run any number of them)
  correlator detect incidents, pin them on deploys, write deploys/incidents (run one)
  dora      print the four DORA keys and their bands (--env, --service, --since 30d, --json)
  replay    send a scenario to a running gateway (--gateway URL, --scenario reference|realistic)
  migrate   apply the ClickHouse schema migrations and exit
  config    list every setting with its environment variable and default
  version   print the version

Settings come from FAULTLINE_* environment variables: see 'faultline config'.`
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n\n%s", usage())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "version":
		fmt.Println("faultline", version)
		return nil
	case "config":
		return printConfig()
	case "dora":
		return cmdDora(ctx, args[1:], os.Stdout)
	case "replay":
		return cmdReplay(ctx, args[1:], os.Stdout)
	case "migrate":
		return cmdMigrate(ctx)
	case "run", "worker", "gateway", "correlator":
		return cmdServe(ctx, roles[args[0]], nil)
	case "help", "-h", "--help":
		fmt.Println(usage())
		return nil
	default:
		return fmt.Errorf("unknown command %q\n\n%s", args[0], usage())
	}
}

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
//	faultline check     validate the settings of roles without connecting to anything
//	faultline config    list every setting (environment variables)
//	faultline version   print the version
//
// Every command takes -h or --help, which prints its usage and exits 0
// without starting, connecting to or migrating anything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
)

var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "faultline:", err)
		os.Exit(1)
	}
}

// A command is one subcommand. Its function parses its flags (with
// parseFlags) before doing anything else, so that -h and --help print the
// usage and return nil having started, connected to and migrated nothing.
type command struct {
	name     string
	synopsis string // what follows the name in the usage line
	summary  string // one line for the list of commands
	about    string // what --help says it does
	settings bool   // it reads the FAULTLINE_* settings
	run      func(ctx context.Context, args []string, out io.Writer) error
}

// commands lists the subcommands in the order help shows them. It is a
// function, not a variable, because the commands look themselves up in it.
func commands() []command {
	return []command{
		{name: "run", summary: "run everything in one process (embedded NATS and local ClickHouse unless configured)", settings: true,
			about: "Runs the gateway, a worker, the correlator and the webhook notifier in one process. With\n" +
				"FAULTLINE_NATS_URL empty it embeds a NATS server; with FAULTLINE_CLICKHOUSE_ADDR empty it starts\n" +
				"the local ClickHouse. It applies the schema migrations at start. Ctrl-C stops it gracefully.",
			run: serveCommand("run")},
		{name: "gateway", summary: "serve OTLP/HTTP, OTLP/gRPC and the event endpoints into JetStream", settings: true,
			about: "Serves OTLP/HTTP, OTLP/gRPC and the deploy, incident and tool endpoints, and publishes what\n" +
				"it accepts to JetStream. Run any number behind a load balancer. Needs FAULTLINE_NATS_URL.",
			run: serveCommand("gateway")},
		{name: "worker", summary: "consume OTLP from JetStream into ClickHouse (run any number of them)", settings: true,
			about: "Consumes OTLP payloads from the telemetry stream and inserts them into ClickHouse exactly\n" +
				"once. Run any number; they share one durable consumer. Needs FAULTLINE_NATS_URL and\n" +
				"FAULTLINE_CLICKHOUSE_ADDR.",
			run: serveCommand("worker")},
		{name: "correlator", summary: "detect incidents, pin them on deploys, write deploys/incidents (run one)", settings: true,
			about: "Detects incidents, pins them on deploys, writes the deploys, incidents and incident_suspects\n" +
				"tables and delivers alert webhooks. Run one. Needs FAULTLINE_NATS_URL and\n" +
				"FAULTLINE_CLICKHOUSE_ADDR.",
			run: serveCommand("correlator")},
		{name: "dora", synopsis: " [flags]", summary: "print the four DORA keys and their bands (--env, --service, --since 30d, --json)", settings: true,
			about: "Prints the four DORA keys and their bands per environment and service, read from\n" +
				"ClickHouse (FAULTLINE_CLICKHOUSE_ADDR, else the local ClickHouse of a running faultline run).\n" +
				"docs/dora.md defines every figure.",
			run: cmdDora},
		{name: "replay", synopsis: " [flags]", summary: "send a scenario to a running gateway (--gateway URL, --scenario reference|realistic)",
			about: "Sends a scenario's telemetry and events to a running gateway at full speed.",
			run:   cmdReplay},
		{name: "migrate", summary: "apply the ClickHouse schema migrations and exit", settings: true,
			about: "Applies the ClickHouse schema migrations not yet applied to FAULTLINE_CLICKHOUSE_ADDR and\n" +
				"exits. Running it again changes nothing.",
			run: cmdMigrate},
		{name: "check", synopsis: " ROLE...", summary: "validate the settings of the named roles without connecting to anything", settings: true,
			about: "Validates the settings as the named roles would at start, and what each needs besides\n" +
				"(the NATS and ClickHouse addresses of a role that joins a deployment), without connecting\n" +
				"to or starting anything. Roles: " + strings.Join(checkRoles, ", ") + ".\n" +
				"Exits 0 when the settings are valid, 1 with a message naming the setting when not.",
			run: cmdCheck},
		{name: "config", synopsis: " [--markdown | --nats-permissions]", summary: "list every setting with its environment variable and default",
			about: "Lists every setting: variable, type, default and description. --markdown prints\n" +
				"docs/settings.md instead; --nats-permissions, the NATS users of the roles with the\n" +
				"permissions each needs, as nats-server configuration.",
			run: cmdConfig},
		{name: "version", summary: "print the version", about: "Prints the version.", run: cmdVersion},
		{name: "help", synopsis: " [COMMAND]", summary: "print this list, or a command's usage", about: "Prints the list of commands, or the usage of one.", run: cmdHelp},
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: faultline <command> [flags]\n\ncommands:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	b.WriteString("\n'faultline <command> --help' prints a command's usage. Settings come from FAULTLINE_*\n" +
		"environment variables: see 'faultline config' and docs/settings.md.")
	return b.String()
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n\n%s", usage())
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprintln(out, usage())
		return nil
	}
	c, ok := lookup(args[0])
	if !ok {
		return fmt.Errorf("unknown command %q\n\n%s", args[0], usage())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, args[1:], out)
}

// parseFlags parses a command's arguments. For -h or --help it prints the
// command's usage to out and reports help, and the command returns nil at
// once. Other mistakes are errors that point at --help.
func parseFlags(fs *flag.FlagSet, args []string, out io.Writer) (help bool, err error) {
	fs.SetOutput(io.Discard) // parseFlags reports errors itself
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(fs, out)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w (see 'faultline %s --help')", fs.Name(), err, fs.Name())
	}
	return false, nil
}

// noArgs parses the flags of a command that takes no arguments.
func noArgs(fs *flag.FlagSet, args []string, out io.Writer) (help bool, err error) {
	if help, err := parseFlags(fs, args, out); help || err != nil {
		return help, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("%s takes no arguments, got %q (see 'faultline %s --help')", fs.Name(), fs.Args(), fs.Name())
	}
	return false, nil
}

func printUsage(fs *flag.FlagSet, out io.Writer) {
	c, _ := lookup(fs.Name())
	fmt.Fprintf(out, "usage: faultline %s%s\n\n%s\n", c.name, c.synopsis, c.about)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(out, "\nflags:")
		fs.SetOutput(out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if c.settings {
		fmt.Fprintln(out, "\nSettings come from FAULTLINE_* environment variables: 'faultline config' lists them,\n"+
			"docs/settings.md explains them, 'faultline check' validates them.")
	}
}

// serveCommand returns the command that runs a role until SIGINT/SIGTERM.
func serveCommand(name string) func(context.Context, []string, io.Writer) error {
	return func(ctx context.Context, args []string, out io.Writer) error {
		if help, err := noArgs(flag.NewFlagSet(name, flag.ContinueOnError), args, out); help || err != nil {
			return err
		}
		return cmdServe(ctx, roles[name], nil)
	}
}

func cmdVersion(_ context.Context, args []string, out io.Writer) error {
	if help, err := noArgs(flag.NewFlagSet("version", flag.ContinueOnError), args, out); help || err != nil {
		return err
	}
	fmt.Fprintln(out, "faultline", version)
	return nil
}

func cmdHelp(_ context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("help", flag.ContinueOnError)
	if help, err := parseFlags(fs, args, out); help || err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		fmt.Fprintln(out, usage())
		return nil
	case 1:
		c, ok := lookup(fs.Arg(0))
		if !ok {
			return fmt.Errorf("unknown command %q\n\n%s", fs.Arg(0), usage())
		}
		// Every command answers --help before doing anything else.
		return c.run(context.Background(), []string{"--help"}, out)
	}
	return fmt.Errorf("help takes one command, got %q", fs.Args())
}

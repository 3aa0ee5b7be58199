package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/faultline-dev/faultline/pipeline/replay"
)

// cmdReplay sends a scenario to a running gateway at full speed: the
// reference scenario (a few services over four hours of event time, with
// faulty releases, a rollback, a staging decoy, a late deploy event, an
// Alertmanager alert and a metrics-only incident), or the realistic one
// (a dozen services of noisy traffic with eight real incidents among
// traps, the yardstick detectors are scored against).
func cmdReplay(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	gw := fs.String("gateway", "http://127.0.0.1:4318", "gateway base URL")
	token := fs.String("token", os.Getenv("FAULTLINE_GATEWAY_TOKEN"), "bearer token (default $FAULTLINE_GATEWAY_TOKEN)")
	scenario := fs.String("scenario", "reference", "reference or realistic")
	seed := fs.Uint64("seed", 1, "scenario seed")
	shuffle := fs.Duration("shuffle", 0, "reorder requests within this much event time (e.g. 2m), as skewed collectors would")
	if help, err := noArgs(fs, args, out); help || err != nil {
		return err
	}
	var reqs []replay.Request
	var exp []replay.Expected
	switch *scenario {
	case "reference":
		reqs = replay.Scenario(*seed)
	case "realistic":
		reqs, exp = replay.Realistic(*seed)
	default:
		return fmt.Errorf("replay: --scenario %q, want reference or realistic", *scenario)
	}
	reqs = replay.Shuffle(reqs, *shuffle, *seed)
	records := 0
	for _, r := range reqs {
		records += r.Records
	}
	start := time.Now()
	s := &replay.Sender{BaseURL: *gw, Token: *token}
	if err := s.Send(ctx, reqs); err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Fprintf(out, "sent %d requests (%d records and events) in %s, event time %s to %s\n",
		len(reqs), records, el.Round(time.Millisecond), reqs[0].At.Format(time.RFC3339), reqs[len(reqs)-1].At.Format(time.RFC3339))
	if len(exp) > 0 {
		fmt.Fprintf(out, "the %d real incidents (everything else is noise a detector must leave alone):\n", len(exp))
		for _, e := range exp {
			suspect := e.SuspectVersion
			if suspect == "" {
				suspect = "no deploy"
			}
			fmt.Fprintf(out, "  %-10s %s/%s %s-%s %s, caused by %s\n", e.Name, e.Service, e.Environment,
				e.Start.Format("15:04"), e.End.Format("15:04"), e.Signal, suspect)
		}
	}
	fmt.Fprintln(out, "then: faultline dora --env production   (incidents are detected once event time passes the rules' windows)")
	return nil
}

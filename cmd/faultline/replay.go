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

// cmdReplay sends the reference scenario to a running gateway at full
// speed: a few services over four hours of event time, with faulty
// releases, a rollback, a staging decoy, a late deploy event, an
// Alertmanager alert and a metrics-only incident.
func cmdReplay(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	gw := fs.String("gateway", "http://127.0.0.1:4318", "gateway base URL")
	token := fs.String("token", os.Getenv("FAULTLINE_GATEWAY_TOKEN"), "bearer token (default $FAULTLINE_GATEWAY_TOKEN)")
	seed := fs.Uint64("seed", 1, "scenario seed")
	shuffle := fs.Duration("shuffle", 0, "reorder requests within this much event time (e.g. 2m), as skewed collectors would")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reqs := replay.Shuffle(replay.Scenario(*seed), *shuffle, *seed)
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
	fmt.Fprintln(out, "then: faultline dora --env production   (incidents are detected once event time passes the rules' windows)")
	return nil
}

package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/correlator"
)

// Names of state the roles keep in NATS beside the streams. The ledger
// bucket is a setting (FAULTLINE_WORKER_LEDGER_BUCKET); these are not.
const (
	webhooksBucket   = "faultline_webhooks"    // the gateway's CI/CD webhook state
	alertsSentBucket = "faultline_alerts_sent" // the correlator's published alerts and incidents
	// The correlator's checkpoint (an object store) and its leader lease
	// (a KV bucket), so that a standby takes over from where the leader
	// stopped.
	leaseBucket = correlator.LeaseBucket
)

// A natsGrant is one subject a role needs, and why.
type natsGrant struct {
	Subject, Why string
}

// natsRole is what one role that connects to NATS publishes and
// subscribes to.
type natsRole struct {
	Role               string
	Publish, Subscribe []natsGrant
}

// natsPermissions is the one list of the NATS permissions each role needs
// with settings c: deploy/README.md's table is checked against it, faultline
// config --nats-permissions prints it as nats-server configuration, and
// TestNATSPermissions runs the roles as users holding exactly these. The
// first entry applies to every role.
func natsPermissions(c *Config) []natsRole {
	n := c.NATS
	ack := func(stream string) natsGrant {
		return natsGrant{"$JS.ACK." + stream + ".>", "acks of the " + stream + " stream's messages"}
	}
	kv := func(bucket, why string) natsGrant { return natsGrant{"$KV." + bucket + ".>", why} }
	return []natsRole{
		{Role: "every role",
			Publish:   []natsGrant{{"$JS.API.>", "creating and updating streams, buckets and consumers; reading buckets and consumers"}},
			Subscribe: []natsGrant{{"_INBOX.>", "replies to its requests, publish acks, and the messages of its consumers"}}},
		{Role: "gateway", Publish: []natsGrant{
			{n.LogsSubject, "OTLP logs"},
			{n.MetricsSubject, "OTLP metrics"},
			{broker.DeploysSubject, "deploy events"},
			{broker.IncidentsSubject, "incident events from the tools"},
			kv(webhooksBucket, "pushes, deployed commits, Flux revisions and deploys seen by the CI/CD endpoints"),
		}},
		{Role: "worker", Publish: []natsGrant{
			{broker.AggregatesSubject, "per-minute aggregates for detection"},
			{broker.DeadLetterPrefix + ".>", "dead letters"},
			kv(c.Worker.LedgerBucket, "the exactly-once ledger"),
			ack(n.TelemetryStream),
		}},
		{Role: "correlator", Publish: []natsGrant{
			{broker.IncidentsSubject, "detected incidents"},
			{broker.AlertsPrefix + ".>", "alerts for the notifier"},
			{broker.DeadLetterPrefix + ".>", "alerts whose delivery failed for good"},
			kv(alertsSentBucket, "alerts and incidents already published"),
			ack(n.AlertsStream),
			{"$O." + c.Correlator.CheckpointBucket + ".>", "its checkpoint (an object store)"},
			kv(leaseBucket, "the leader's lease"),
		}},
	}
}

// subjects lists the grants' subjects.
func subjects(gs []natsGrant) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Subject
	}
	return out
}

// natsPasswordVar is the variable of nats-server's environment that
// faultline config --nats-permissions reads a role's password from.
func natsPasswordVar(role string) string {
	return "$NATS_PASSWORD_" + strings.ToUpper(role)
}

// natsAuthorization writes an authorization block of nats-server
// configuration with one user per role holding exactly its permissions;
// password gives each role's password as written (a quoted string, or a
// $VARIABLE nats-server reads from its environment).
func natsAuthorization(w io.Writer, perms []natsRole, password func(role string) string) error {
	list := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	common := perms[0]
	for _, r := range perms[1:] {
		pub := append(subjects(common.Publish), subjects(r.Publish)...)
		sub := append(subjects(common.Subscribe), subjects(r.Subscribe)...)
		fmt.Fprintf(&b, "    {\n      user: %q\n      password: %s\n      permissions: {\n        publish: {allow: %s}\n        subscribe: {allow: %s}\n      }\n    }\n",
			r.Role, password(r.Role), list(pub), list(sub))
	}
	b.WriteString("  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

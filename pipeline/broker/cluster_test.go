package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
)

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("look up stream X: %w", context.DeadlineExceeded), true},
		{nats.ErrTimeout, true},
		{nats.ErrNoResponders, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}, true},
		{jetstream.ErrStreamNotFound, false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use with a different configuration"}, false},
		{context.Canceled, false},
		{errors.New("invalid stream config"), false},
	} {
		if got := broker.Transient(c.err); got != c.want {
			t.Errorf("Transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestProvisionWaitsForQuorum: a role starting while two of three servers
// are down waits for them instead of exiting, and provisions its R3 streams
// once they are back.
func TestProvisionWaitsForQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-server NATS cluster")
	}
	cl := natstest.StartCluster(t, 3)
	cl.Kill(1)
	cl.Kill(2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, js := cl.Connect(ctx, t)
	done := make(chan error, 1)
	go func() { done <- broker.Provision(ctx, js, broker.Streams(c), nil) }()
	select {
	case err := <-done:
		t.Fatalf("provision without quorum returned %v, want it to wait", err)
	case <-time.After(3 * time.Second):
	}
	for _, i := range []int{1, 2} {
		if err := cl.Restart(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("provision once the servers are back: %v", err)
	}
	for _, def := range broker.Streams(c) {
		s, err := js.Stream(ctx, def.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info := s.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: %d replicas configured, cluster %+v", def.Name, info.Config.Replicas, info.Cluster)
		}
	}
}

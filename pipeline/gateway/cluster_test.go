package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/pipeline/broker/natstest"
	"github.com/faultline-dev/faultline/pipeline/gateway"
	"github.com/faultline-dev/faultline/processors/otlp/otlptest"
)

// TestLeaderKilled posts distinct requests from four clients to a gateway
// on a three-server JetStream cluster (R3 streams) and kills the telemetry
// stream's leader with SIGKILL while they flow, then starts it again. The
// clients retry 503 as Collectors do. Whatever the gateway answered 200 is
// in the stream once, and the stream holds nothing else: no publish that
// timed out during the election was answered 200 without being stored, and
// none stored before its timeout was stored again by the retry.
func TestLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-server NATS cluster")
	}
	cl := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, js := cl.Connect(ctx, t)
	if err := broker.Provision(ctx, js, broker.Streams(n), nil); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(testConfig(), js, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())

	var (
		mu       sync.Mutex
		accepted = map[string][]byte{} // id -> body answered 200
		refused  atomic.Int64          // 5xx answers and transport errors, retried
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("c%d-%d", c, i)
				body := otlptest.LogsRequest(id, 5)
				for {
					resp, err := client.Post("http://"+g.Addr()+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							break
						}
						if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
							t.Errorf("%s: %d", id, resp.StatusCode)
							return
						}
					}
					refused.Add(1)
					if ctx.Err() != nil {
						t.Errorf("%s never accepted", id)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				accepted[id] = body
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(accepted) }
	waitFor := func(n int) {
		for count() < n && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}

	waitFor(100)
	leader, err := cl.StreamLeader(ctx, js, n.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := cl.MetaLeader()
	before := count()
	cl.Kill(leader)
	t.Logf("killed %s, leader of %s (meta leader: %s) after %d requests", cl.Nodes[leader].Name, n.TelemetryStream, cl.Nodes[max(meta, 0)].Name, before)
	waitFor(before + 300)
	if err := cl.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	waitFor(count() + 100)
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		return
	}

	// Read the stream back from a server that was never killed.
	s, err := js.Stream(ctx, n.TelemetryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		stored[string(payload(t, m))]++
	}
	for id, body := range accepted {
		if k := stored[string(body)]; k != 1 {
			t.Errorf("%s answered 200, stored %d times", id, k)
		}
		delete(stored, string(body))
	}
	if len(stored) > 0 {
		t.Errorf("%d stored requests were never answered 200", len(stored))
	}
	t.Logf("%d requests answered 200, %d messages stored, %d answers refused and retried", len(accepted), info.State.Msgs, refused.Load())
}

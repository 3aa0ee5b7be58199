package chlocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Topology is a cluster as one node's config.xml describes it: the
// remote_servers entry every node shares, and this node's own macros.
//
// What the engine behind the launcher (clickhouse-local from libchdb) can
// do with it is narrower than a server: Distributed tables over any number
// of shards and replicas work, but it never sets the interserver address
// that Replicated tables need to activate, and it refuses ON CLUSTER DDL
// ("Replicated DDL queries are disabled") and starts no DDL worker.
// ZooKeeper and InterserverPort are still written when given, so the same
// topology serves a real server and the probes in docs/operations.md.
type Topology struct {
	Name string
	// Shards lists each shard's replicas as native host:port addresses.
	Shards [][]string
	// InternalReplication false makes a Distributed table write every
	// replica of a shard itself: the way replicas of plain MergeTree
	// tables stay copies of each other, with no coordination service.
	// True leaves it to Replicated tables (one replica per shard).
	InternalReplication bool
	// Shard and Replica are this node's {shard} and {replica} macros.
	Shard, Replica string
	// ZooKeeper lists coordination service addresses (host:port).
	ZooKeeper []string
	// InterserverPort is the port announced to replicas for part fetches.
	InterserverPort int
	// QueryLog keeps system.query_log and system.part_log, which the
	// embedded defaults leave out, for benchmarks that read them.
	QueryLog bool
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	macroRE = regexp.MustCompile(`^[A-Za-z0-9_.-]*$`)
)

// configXML renders t as a config.xml, checking every value that lands in
// it: names must be identifiers and addresses host:port, so nothing needs
// XML escaping.
func (t Topology) configXML() (string, error) {
	var b strings.Builder
	b.WriteString("<clickhouse>\n")
	if t.QueryLog {
		b.WriteString("\t<query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>\n" +
			"\t<part_log><database>system</database><table>part_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></part_log>\n")
	}
	if t.Name == "" && len(t.Shards) == 0 { // no cluster: a server of its own
		b.WriteString("</clickhouse>\n")
		return b.String(), nil
	}
	if !nameRE.MatchString(t.Name) {
		return "", fmt.Errorf("local clickhouse: cluster name %q is not a plain identifier", t.Name)
	}
	if len(t.Shards) == 0 {
		return "", fmt.Errorf("local clickhouse: cluster %s has no shards", t.Name)
	}
	if !macroRE.MatchString(t.Shard) || !macroRE.MatchString(t.Replica) {
		return "", fmt.Errorf("local clickhouse: macros shard %q replica %q: letters, digits, _ . - only", t.Shard, t.Replica)
	}
	hostPort := func(a string) (string, string, error) {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return "", "", fmt.Errorf("local clickhouse: address %q: %w", a, err)
		}
		if _, err := strconv.Atoi(p); err != nil || !macroRE.MatchString(h) {
			return "", "", fmt.Errorf("local clickhouse: address %q is not host:port", a)
		}
		return h, p, nil
	}
	fmt.Fprintf(&b, "\t<remote_servers>\n\t\t<%s>\n", t.Name)
	for i, shard := range t.Shards {
		if len(shard) == 0 {
			return "", fmt.Errorf("local clickhouse: cluster %s shard %d has no replicas", t.Name, i+1)
		}
		fmt.Fprintf(&b, "\t\t\t<shard>\n\t\t\t\t<internal_replication>%t</internal_replication>\n", t.InternalReplication)
		for _, a := range shard {
			h, p, err := hostPort(a)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "\t\t\t\t<replica><host>%s</host><port>%s</port></replica>\n", h, p)
		}
		b.WriteString("\t\t\t</shard>\n")
	}
	fmt.Fprintf(&b, "\t\t</%s>\n\t</remote_servers>\n", t.Name)
	if t.Shard != "" || t.Replica != "" {
		fmt.Fprintf(&b, "\t<macros><shard>%s</shard><replica>%s</replica></macros>\n", t.Shard, t.Replica)
	}
	if len(t.ZooKeeper) > 0 {
		b.WriteString("\t<zookeeper>\n")
		for _, a := range t.ZooKeeper {
			h, p, err := hostPort(a)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "\t\t<node><host>%s</host><port>%s</port></node>\n", h, p)
		}
		b.WriteString("\t</zookeeper>\n\t<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n")
	}
	if t.InterserverPort > 0 {
		fmt.Fprintf(&b, "\t<interserver_http_host>127.0.0.1</interserver_http_host>\n\t<interserver_http_port>%d</interserver_http_port>\n", t.InterserverPort)
	}
	b.WriteString("</clickhouse>\n")
	return b.String(), nil
}

// writeConfig writes t's config.xml in a directory of its own under the
// data directory and returns that directory. The launcher runs
// clickhouse-local, which reads config.xml from its working directory when
// no --config-file is given, so the launcher binary needs no flag for it.
func writeConfig(dataDir string, t Topology) (string, error) {
	conf, err := t.configXML()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(dataDir, "faultline-config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("local clickhouse: config dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("local clickhouse: write cluster config: %w", err)
	}
	return dir, nil
}

// ClusterOptions say how to start a cluster of local servers.
type ClusterOptions struct {
	Bin      string // the faultline-clickhouse binary
	Dir      string // parent of the nodes' data directories
	Name     string // cluster name in remote_servers
	Shards   int
	Replicas int // per shard
	// InternalReplication, ZooKeeper: as in Topology.
	InternalReplication bool
	ZooKeeper           []string
	Output              io.Writer // every node's output; nil discards
	// Restart brings a node back RestartDelay after it exits by itself.
	Restart      bool
	RestartDelay time.Duration
	ReadyTimeout time.Duration
}

// Cluster is a running set of local servers that share one topology.
type Cluster struct {
	Name  string
	Nodes [][]*Server // [shard][replica]
}

// StartCluster starts Shards x Replicas servers, each in Dir/s<shard>r<replica>,
// every one of them knowing the whole cluster, and returns once all answer.
// The ports are chosen up front, since each node's config names every
// other node.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	if o.Shards < 1 || o.Replicas < 1 {
		return nil, fmt.Errorf("local clickhouse cluster: %d shards x %d replicas", o.Shards, o.Replicas)
	}
	type node struct {
		tcp, http, interserver int
		top                    Topology
	}
	nodes := make([][]node, o.Shards)
	shards := make([][]string, o.Shards)
	for s := range nodes {
		nodes[s] = make([]node, o.Replicas)
		for r := range nodes[s] {
			n := &nodes[s][r]
			ports := []*int{&n.tcp, &n.http}
			if len(o.ZooKeeper) > 0 { // replication announces an interserver port
				ports = append(ports, &n.interserver)
			}
			for _, p := range ports {
				var err error
				if *p, err = FreePort(); err != nil {
					return nil, err
				}
			}
			shards[s] = append(shards[s], net.JoinHostPort("127.0.0.1", strconv.Itoa(n.tcp)))
		}
	}
	c := &Cluster{Name: o.Name, Nodes: make([][]*Server, o.Shards)}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for s := range nodes {
		c.Nodes[s] = make([]*Server, o.Replicas)
		for r := range nodes[s] {
			n := nodes[s][r]
			n.top = Topology{
				Name: o.Name, Shards: shards, InternalReplication: o.InternalReplication,
				Shard: strconv.Itoa(s + 1), Replica: fmt.Sprintf("s%dr%d", s+1, r+1),
				ZooKeeper: o.ZooKeeper, InterserverPort: n.interserver,
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv, err := Start(ctx, Options{
					Bin: o.Bin, Dir: filepath.Join(o.Dir, n.top.Replica),
					TCPPort: n.tcp, HTTPPort: n.http, Output: o.Output,
					ReadyTimeout: o.ReadyTimeout, Restart: o.Restart, RestartDelay: o.RestartDelay,
					Topology: &n.top,
				})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("node %s: %w", n.top.Replica, err))
					return
				}
				c.Nodes[s][r] = srv
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		c.Stop()
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Addrs lists every node's native address, shard by shard.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, shard := range c.Nodes {
		for _, s := range shard {
			if s != nil {
				a = append(a, s.Addr)
			}
		}
	}
	return a
}

// Stop stops every node.
func (c *Cluster) Stop() error {
	var errs []error
	for _, shard := range c.Nodes {
		for _, s := range shard {
			if s != nil {
				if err := s.Stop(); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

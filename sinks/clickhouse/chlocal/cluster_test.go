package chlocal

import (
	"strings"
	"testing"
)

func TestTopologyConfigXML(t *testing.T) {
	top := Topology{
		Name: "c", Shards: [][]string{{"127.0.0.1:9001", "127.0.0.1:9002"}, {"127.0.0.1:9003"}},
		Shard: "1", Replica: "s1r2", ZooKeeper: []string{"127.0.0.1:2181"}, InterserverPort: 9009,
	}
	got, err := top.configXML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<c>\n\t\t\t<shard>\n\t\t\t\t<internal_replication>false</internal_replication>\n" +
			"\t\t\t\t<replica><host>127.0.0.1</host><port>9001</port></replica>\n" +
			"\t\t\t\t<replica><host>127.0.0.1</host><port>9002</port></replica>\n\t\t\t</shard>\n\t\t\t<shard>",
		"<replica><host>127.0.0.1</host><port>9003</port></replica>",
		"<macros><shard>1</shard><replica>s1r2</replica></macros>",
		"<node><host>127.0.0.1</host><port>2181</port></node>",
		"<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>",
		"<interserver_http_port>9009</interserver_http_port>",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}

	for _, bad := range []Topology{
		{Name: "a</x>", Shards: [][]string{{"127.0.0.1:1"}}},
		{Name: "c"},
		{Name: "c", Shards: [][]string{{}}},
		{Name: "c", Shards: [][]string{{"127.0.0.1"}}},
		{Name: "c", Shards: [][]string{{"<h>:1"}}},
		{Name: "c", Shards: [][]string{{"h:port"}}},
		{Name: "c", Shards: [][]string{{"h:1"}}, Replica: "r</replica>"},
		{Name: "c", Shards: [][]string{{"h:1"}}, ZooKeeper: []string{"zk"}},
	} {
		if _, err := bad.configXML(); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}

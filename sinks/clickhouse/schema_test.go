package clickhouse

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata (go test ./sinks/clickhouse -run TestSchemaGolden -update)")

// TestSchemaGolden pins the rendered DDL of each deployment shape. The
// single-node file predates cluster mode's Distributed tables: it must not
// change when cluster mode does.
func TestSchemaGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		cfg  Config
	}{
		{"schema_single.sql", Config{Database: "faultline"}},
		{"schema_single_ttl.sql", Config{Database: "faultline", TTLDays: 30}},
		{"schema_cluster.sql", Config{Database: "faultline", Cluster: "prod", TTLDays: 30}},
		{"schema_cluster_nocoord.sql", Config{Database: "faultline", Cluster: "prod", noCoordination: true}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := tc.cfg.script()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with -update)", err)
			}
			if got != string(want) {
				t.Errorf("rendered schema differs from %s; if the change is intended, rerun with -update and review the diff:\n%s", path, firstDiff(string(want), got))
			}
		})
	}
}

// firstDiff shows where two texts part, with some context.
func firstDiff(want, got string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-200)
	return "want: ..." + want[from:min(len(want), i+200)] + "\n got: ..." + got[from:min(len(got), i+200)]
}

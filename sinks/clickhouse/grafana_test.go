package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/faultline-dev/faultline/sinks/clickhouse"
	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

const grafanaDir = "../../deploy/grafana"

// TestGrafanaDashboards checks deploy/grafana: the provisioning files parse
// and name the data source the dashboards use, every dashboard is JSON
// with a unique uid, and every SQL query in them (panels, variables,
// annotations) runs on a migrated database holding a small history, once
// Grafana's macros and variables are replaced as the ClickHouse data source
// plugin replaces them.
func TestGrafanaDashboards(t *testing.T) {
	var ds struct {
		Datasources []struct {
			UID, Type string
			JSONData  map[string]any `json:"jsonData"`
		}
	}
	readYAML(t, filepath.Join(grafanaDir, "provisioning/datasources/faultline.yaml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "grafana-clickhouse-datasource" || ds.Datasources[0].JSONData["defaultDatabase"] != "faultline" {
		t.Fatalf("data source provisioning: %+v", ds)
	}
	uid := ds.Datasources[0].UID
	var providers struct {
		Providers []struct {
			Type    string
			Options map[string]any
		}
	}
	readYAML(t, filepath.Join(grafanaDir, "provisioning/dashboards/faultline.yaml"), &providers)
	if len(providers.Providers) != 1 || providers.Providers[0].Type != "file" || providers.Providers[0].Options["path"] == nil {
		t.Fatalf("dashboard provisioning: %+v", providers)
	}

	// On one server and across shards: a dashboard that joins tables must
	// say GLOBAL, or a cluster refuses the query.
	t.Run("single", func(t *testing.T) { testGrafanaDashboards(t, uid, chtest.Database(t)) })
	t.Run("sharded", func(t *testing.T) { testGrafanaDashboards(t, uid, shardedDatabase(t)) })
}

func testGrafanaDashboards(t *testing.T, uid string, cfg clickhouse.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	uiFixture(t, ctx, conn)
	vars := map[string]string{"database": cfg.Database, "environment": "production", "service": "checkout", "version": "v1.1.0"}
	from, to := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

	files, err := filepath.Glob(filepath.Join(grafanaDir, "dashboards", "*.json"))
	if err != nil || len(files) != 3 {
		t.Fatalf("dashboards: %v %v, want the DORA, incidents and service ones", files, err)
	}
	uids := map[string]string{}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var d map[string]any
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			id, _ := d["uid"].(string)
			if id == "" || d["title"] == nil || uids[id] != "" {
				t.Fatalf("uid %q (also in %s), title %v", id, uids[id], d["title"])
			}
			uids[id] = f
			if panels, _ := d["panels"].([]any); len(panels) == 0 {
				t.Fatal("no panels")
			}
			var sqls []string
			var bad []string
			walk(d, "", func(path string, m map[string]any) {
				if dsrc, ok := m["datasource"].(map[string]any); ok && dsrc["type"] == "grafana-clickhouse-datasource" && dsrc["uid"] != uid {
					bad = append(bad, fmt.Sprintf("%s: data source uid %v, want %s", path, dsrc["uid"], uid))
				}
				if s, ok := m["rawSql"].(string); ok {
					sqls = append(sqls, path+"\x00"+s)
				}
			})
			for _, b := range bad {
				t.Error(b)
			}
			if len(sqls) == 0 {
				t.Fatal("no SQL")
			}
			sort.Strings(sqls)
			for _, ps := range sqls {
				path, sql, _ := strings.Cut(ps, "\x00")
				q, err := grafanaExpand(sql, vars, from, to)
				if err != nil {
					t.Errorf("%s: %v\n%s", path, err, sql)
					continue
				}
				rows, err := conn.Query(ctx, q)
				if err != nil {
					t.Errorf("%s: %v\n%s", path, err, q)
					continue
				}
				n := 0
				for rows.Next() {
					n++
				}
				err = rows.Err()
				rows.Close()
				if err != nil {
					t.Errorf("%s: %v\n%s", path, err, q)
				} else if n == 0 {
					t.Errorf("%s: no rows on a history that has some\n%s", path, q)
				}
			}
		})
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// walk calls f on every object of a decoded JSON document, with its path.
func walk(v any, path string, f func(string, map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(path, x)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walk(x[k], path+"."+k, f)
		}
	case []any:
		for i, e := range x {
			walk(e, fmt.Sprintf("%s[%d]", path, i), f)
		}
	}
}

var (
	grafanaVarRE   = regexp.MustCompile(`\$\{([a-z_]+)(?::([a-z]+))?\}|\$([a-z_]+)\b`)
	grafanaMacroRE = regexp.MustCompile(`\$__(timeFilter|dateFilter|timeInterval)\(([^()]+)\)`)
)

// grafanaExpand renders a dashboard query as the ClickHouse data source
// plugin does for the time range [from, to] and the variables' values (one
// value each, so $__conditionalAll keeps its condition). Anything it does
// not know is an error, so a dashboard cannot use a macro this test skips.
func grafanaExpand(sql string, vars map[string]string, from, to time.Time) (string, error) {
	// $__conditionalAll(condition, $var): the condition, as a value is
	// selected. The condition holds parentheses and commas: split at the
	// last comma at depth zero.
	for {
		i := strings.Index(sql, "$__conditionalAll(")
		if i < 0 {
			break
		}
		start := i + len("$__conditionalAll(")
		depth, comma, end := 0, -1, -1
		for j := start; j < len(sql) && end < 0; j++ {
			switch sql[j] {
			case '(':
				depth++
			case ')':
				if depth == 0 {
					end = j
				}
				depth--
			case ',':
				if depth == 0 {
					comma = j
				}
			}
		}
		if end < 0 || comma < 0 {
			return "", fmt.Errorf("unbalanced $__conditionalAll")
		}
		sql = sql[:i] + "(" + strings.TrimSpace(sql[start:comma]) + ")" + sql[end+1:]
	}
	sql = grafanaMacroRE.ReplaceAllStringFunc(sql, func(m string) string {
		sub := grafanaMacroRE.FindStringSubmatch(m)
		col := strings.TrimSpace(sub[2])
		switch sub[1] {
		case "timeFilter":
			return fmt.Sprintf("%s >= toDateTime(%d) AND %s <= toDateTime(%d)", col, from.Unix(), col, to.Unix())
		case "dateFilter":
			return fmt.Sprintf("%s >= toDate('%s') AND %s <= toDate('%s')", col, from.Format(time.DateOnly), col, to.Format(time.DateOnly))
		}
		return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL 60 second)", col)
	})
	sql = strings.NewReplacer("$__fromTime", fmt.Sprintf("toDateTime(%d)", from.Unix()), "$__toTime", fmt.Sprintf("toDateTime(%d)", to.Unix()),
		"$__interval_s", "60").Replace(sql)
	var err error
	sql = grafanaVarRE.ReplaceAllStringFunc(sql, func(m string) string {
		sub := grafanaVarRE.FindStringSubmatch(m)
		name, format := sub[1]+sub[3], sub[2]
		v, ok := vars[name]
		if !ok {
			err = fmt.Errorf("unknown variable %s", m)
			return m
		}
		switch format {
		case "":
			return v
		case "singlequote":
			return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
		}
		err = fmt.Errorf("unknown variable format %s", m)
		return m
	})
	if err == nil && strings.Contains(sql, "$") {
		err = fmt.Errorf("left unexpanded: %s", sql[strings.Index(sql, "$"):])
	}
	return sql, err
}

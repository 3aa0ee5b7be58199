package clickhouse_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/sinks/clickhouse/chtest"
)

// TestTablesDocumented: every table, view and column the migrations create
// is described in docs/tables.md, under a heading naming the table, so a
// new column cannot land without its documentation. The columns come from
// a migrated database, not from the DDL text, so views and the Nested
// sub-columns count too.
func TestTablesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "tables.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := docSections(string(doc))
	cfg := chtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := chtest.Conn(t, cfg)
	rows, err := conn.Query(ctx, "SELECT table, name FROM system.columns WHERE database = ? ORDER BY table, position", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	tables := 0
	reported := map[string]bool{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			t.Fatal(err)
		}
		text, ok := sections[table]
		if !ok {
			if !reported[table] {
				t.Errorf("docs/tables.md has no section \"## `%s`\" (or ###)", table)
				reported[table] = true
			}
			continue
		}
		if !strings.Contains(text, "`"+column+"`") {
			t.Errorf("docs/tables.md, section %s: column `%s` is not described", table, column)
		}
		tables++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if tables == 0 {
		t.Fatal("no columns read")
	}
}

var headingRE = regexp.MustCompile("(?m)^#{2,3} `([a-z_]+)`")

// docSections splits the document at its "## `table`" and "### `table`"
// headings.
func docSections(doc string) map[string]string {
	out := map[string]string{}
	idx := headingRE.FindAllStringSubmatchIndex(doc, -1)
	for i, m := range idx {
		end := len(doc)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		out[doc[m[2]:m[3]]] = doc[m[1]:end]
	}
	return out
}

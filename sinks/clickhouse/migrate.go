package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"text/template"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A Migration is one versioned step of the schema. Its statements are
// text/templates over schemaVars, so one definition serves a single server
// (plain MergeTree) and a cluster (ON CLUSTER, Replicated engines, a
// Distributed table over each local one). A statement that renders to
// nothing is skipped: the Distributed statements exist only on a cluster.
// Every statement must be idempotent (IF NOT EXISTS, ADD COLUMN IF NOT
// EXISTS): a crash between a statement and the version record reruns the
// step.
type Migration struct {
	Version int
	Name    string
	Stmts   []string
}

var migrations []Migration

// register adds migrations; each schema file registers its own in init.
func register(ms ...Migration) {
	migrations = append(migrations, ms...)
	sort.Slice(migrations, func(i, j int) bool { return migrations[i].Version < migrations[j].Version })
}

// Migrations returns the known migrations in version order.
func Migrations() []Migration { return append([]Migration(nil), migrations...) }

type schemaVars struct {
	DB        string // quoted database name
	OnCluster string // " ON CLUSTER name" or ""
	DictName  string // the incident_spans dictionary as dictGet names it
	cfg       *Config
}

func (c *Config) vars() schemaVars {
	v := schemaVars{DB: "`" + c.Database + "`", DictName: c.Database + ".incident_spans", cfg: c}
	if c.Cluster != "" && !c.noCoordination {
		v.OnCluster = " ON CLUSTER `" + c.Cluster + "`"
	}
	return v
}

// localSuffix names the table that holds a shard's rows on a cluster; the
// plain name is the Distributed table over it, so queries, views and
// Grafana use the same names on one server and on a cluster.
const localSuffix = "_local"

// distributedStmt creates the Distributed table name over name_local on
// every node. The sharding key must be deterministic: a retried insert has
// to split into the same per-shard blocks as the first attempt, or the
// shards' insert_deduplication_token checks would drop or repeat rows.
const distributedStmt = `
CREATE TABLE IF NOT EXISTS %[1]s.%[2]s%[3]s AS %[1]s.%[2]s` + localSuffix + `
ENGINE = Distributed('%[4]s', '%[5]s', '%[2]s` + localSuffix + `', %[6]s)`

// render expands a statement template.
func (c *Config) render(stmt string) (string, error) {
	v := c.vars()
	t, err := template.New("stmt").Funcs(template.FuncMap{
		// engine turns "MergeTree" or "ReplacingMergeTree(UpdatedAt)" into
		// its Replicated form on a cluster; the server's
		// default_replica_path/default_replica_name fill the omitted
		// ZooKeeper arguments.
		"engine": func(e string) string {
			if !strings.Contains(e, "(") {
				e += "()"
			}
			if c.Cluster != "" && !c.noCoordination {
				e = "Replicated" + e
			}
			return e
		},
		// replicatedWindow gives Replicated tables the same window of
		// remembered insert tokens as plain ones (the server default is
		// 100 inserts, too short for a worker's replay after a long
		// outage).
		"replicatedWindow": func() string {
			if c.Cluster != "" && !c.noCoordination {
				return ", replicated_deduplication_window = 1000"
			}
			return ""
		},
		// dedupWindow sets how many insert tokens a table remembers, on
		// plain and on Replicated tables.
		"dedupWindow": func(n int) string {
			s := fmt.Sprintf("non_replicated_deduplication_window = %d", n)
			if c.Cluster != "" && !c.noCoordination {
				s += fmt.Sprintf(", replicated_deduplication_window = %d", n)
			}
			return s
		},
		// local names the table that stores rows: name itself on one
		// server, name_local under a Distributed name on a cluster.
		"local": func(name string) string {
			if c.Cluster != "" {
				return name + localSuffix
			}
			return name
		},
		// distributed is the statement creating the Distributed table
		// name over name_local, sharded by key; empty on one server.
		"distributed": func(name, key string) string {
			if c.Cluster == "" {
				return ""
			}
			return fmt.Sprintf(distributedStmt, v.DB, name, v.OnCluster, c.Cluster, c.Database, key)
		},
		// dictCredentials are the USER and PASSWORD clauses of a dictionary
		// whose source is this server: its query runs as that user, which
		// is "default" without a password unless they are given.
		"dictCredentials": func() string {
			if c.User == "" || (c.User == "default" && c.Password == "") {
				return ""
			}
			return fmt.Sprintf(" USER %s PASSWORD %s", quoteString(c.User), quoteString(c.Password))
		},
		// ttl is a TTL clause on a DateTime64 column, empty when TTL_DAYS is 0.
		"ttl": func(col string) string {
			if c.TTLDays <= 0 {
				return ""
			}
			return fmt.Sprintf("TTL toDateTime(%s) + toIntervalDay(%d)", col, c.TTLDays)
		},
	}).Option("missingkey=error").Parse(stmt)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

const migrationsTable = "schema_migrations"

// Migrate creates the database if needed and applies every migration not
// yet recorded in {db}.schema_migrations, in version order. Running it twice
// changes nothing; several processes running it at once is harmless because
// every statement is idempotent.
func Migrate(ctx context.Context, c Config, log *slog.Logger) error {
	o, err := c.options("default")
	if err != nil {
		return err
	}
	conn, err := openWith(ctx, o, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	return migrate(ctx, conn, &c, log)
}

// bootstrap creates the database and the table of applied versions; it runs
// before anything is read, on every start.
// On a cluster the versions are read and recorded through a Distributed
// table, so every faultline sees the same history whichever node it talks
// to; a version recorded twice (two processes migrating at once) is
// harmless because readers take DISTINCT Version.
var bootstrap = []string{
	"CREATE DATABASE IF NOT EXISTS {{.DB}}{{.OnCluster}}",
	`CREATE TABLE IF NOT EXISTS {{.DB}}.{{local "` + migrationsTable + `"}}{{.OnCluster}} (
			Version UInt32, Name String, AppliedAt DateTime64(3) DEFAULT now64(3)
		) ENGINE = {{engine "MergeTree"}} ORDER BY Version`,
	`{{distributed "` + migrationsTable + `" "Version"}}`,
}

func migrate(ctx context.Context, conn driver.Conn, c *Config, log *slog.Logger) error {
	for _, s := range bootstrap {
		if err := exec(ctx, conn, c, s); err != nil {
			return fmt.Errorf("migrate: bootstrap: %w", err)
		}
	}
	// Without coordination, DDL reaches only the node migrate talks to, so
	// each node keeps its own history: a version applied on one node says
	// nothing of another's tables.
	history := migrationsTable
	if c.Cluster != "" && c.noCoordination {
		history += localSuffix
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT Version FROM `%s`.%s", c.Database, history))
	if err != nil {
		return fmt.Errorf("migrate: read applied versions: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: read applied versions: %w", err)
		}
		applied[int(v)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: read applied versions: %w", err)
	}
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		for i, s := range m.Stmts {
			if err := exec(ctx, conn, c, s); err != nil {
				return fmt.Errorf("migrate: version %d (%s) statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO `%s`.%s (Version, Name) VALUES (?, ?)", c.Database, history), uint32(m.Version), m.Name); err != nil {
			return fmt.Errorf("migrate: record version %d: %w", m.Version, err)
		}
		if log != nil {
			log.Info("applied clickhouse migration", "version", m.Version, "name", m.Name)
		}
	}
	// The dictionary's source credentials follow the settings: created
	// again at every migrate, not only once.
	if err := exec(ctx, conn, c, incidentSpansDict); err != nil {
		return fmt.Errorf("migrate: incident_spans dictionary: %w", err)
	}
	return nil
}

func exec(ctx context.Context, conn driver.Conn, c *Config, tmpl string) error {
	s, err := c.render(tmpl)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	if strings.TrimSpace(s) == "" {
		return nil // a cluster-only statement on one server
	}
	if err := conn.Exec(ctx, s); err != nil {
		return err
	}
	return nil
}

// script renders every statement Migrate runs on an empty database, in
// order, each migration under a comment naming it: the whole schema as one
// SQL text, for review and for the golden tests.
func (c *Config) script() (string, error) {
	var b strings.Builder
	write := func(head string, stmts []string) error {
		fmt.Fprintf(&b, "-- %s\n", head)
		for _, s := range stmts {
			r, err := c.render(s)
			if err != nil {
				return fmt.Errorf("%s: %w", head, err)
			}
			if strings.TrimSpace(r) == "" {
				continue
			}
			fmt.Fprintf(&b, "%s;\n\n", r)
		}
		return nil
	}
	if err := write("bootstrap", bootstrap); err != nil {
		return "", err
	}
	for _, m := range migrations {
		if err := write(fmt.Sprintf("%d %s", m.Version, m.Name), m.Stmts); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// quoteString is a ClickHouse string literal of s: DDL clauses such as a
// dictionary's credentials take no query parameters.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/chpool"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/faultline-dev/faultline/processors/otlp"
)

// TelemetryWriter inserts decoded OTLP batches. It speaks ClickHouse's
// native protocol through ch-go, whose typed columns take the batch's flat
// slices with a copy per column instead of clickhouse-go's per-row
// reflection over Map values (measured on the Collector exporter's path:
// most of its 2.46 us per row).
// Its columns are reused across writes, so a worker in steady state inserts
// without allocating per row. One Write runs at a time.
type TelemetryWriter struct {
	db       string
	settings []ch.Setting // of every insert, after the token
	pools    []*chpool.Pool
	next     atomic.Uint32

	mu      sync.Mutex
	offsets []uint64 // rebased log attribute offsets of the current block
	logs    logCols
	gauge   gaugeCols
	sum     sumCols
	hist    histCols
	exp     expCols
	summ    summaryCols
}

// NewTelemetryWriter connects to every configured address (inserts rotate
// over them and fail over on error).
func NewTelemetryWriter(ctx context.Context, c Config) (*TelemetryWriter, error) {
	if len(c.Addr) == 0 {
		return nil, errors.New("telemetry writer: no ClickHouse address")
	}
	var tc *tls.Config
	if c.TLS {
		o, err := c.options(c.Database)
		if err != nil {
			return nil, err
		}
		tc = o.TLS
	}
	w := &TelemetryWriter{db: c.Database, settings: insertSettings(c.Cluster != "")}
	for _, a := range c.Addr {
		p, err := chpool.Dial(ctx, chpool.Options{
			ClientOptions: ch.Options{
				Address: a, Database: c.Database, User: c.User, Password: c.Password,
				TLS: tc, DialTimeout: c.DialTimeout, ClientName: "faultline",
			},
			MaxConns: 2,
		})
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("telemetry writer: connect %s: %w", a, err)
		}
		w.pools = append(w.pools, p)
	}
	w.logs.init()
	w.gauge.init()
	w.sum.init()
	w.hist.init()
	w.exp.init()
	w.summ.init()
	return w, nil
}

// Close closes the connections.
func (w *TelemetryWriter) Close() {
	for _, p := range w.pools {
		p.Close()
	}
}

// Write inserts every non-empty table of b, each as one insert whose
// insert_deduplication_token is token + "/" + table: writing the same batch
// again with the same token stores nothing new. It does not retry; the
// caller does, with the same token.
func (w *TelemetryWriter) Write(ctx context.Context, b *otlp.Batch, token string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	type part struct {
		table string
		n     int
		fill  func() proto.Input
		more  func(context.Context) error // the next block, io.EOF after the last
	}
	// Logs go in blocks of blockRows, each filled once the one before is
	// sent: a block is encoded whole in memory, so one block for a 50k-row
	// batch held another ~25 MB. ClickHouse squashes the blocks of one
	// insert into one part (min_insert_block_size_rows), so the token
	// still names the whole insert; a server set not to squash gets one
	// part per block, tokens suffixed by block number, and the same split
	// on every retry.
	var logs proto.Input
	next := 0
	fillLogs := func() proto.Input {
		to := min(b.Logs.Len(), next+blockRows)
		v := logsView(&b.Logs, next, to, &w.offsets)
		next = to
		return w.logs.fill(&b.Src, &v)
	}
	moreLogs := func(context.Context) error {
		logs.Reset()
		if next >= b.Logs.Len() {
			return io.EOF
		}
		fillLogs()
		return nil
	}
	parts := []part{
		{"otel_logs", b.Logs.Len(), func() proto.Input { logs = fillLogs(); return logs }, moreLogs},
		{"otel_metrics_gauge", b.Gauge.Len(), func() proto.Input { return w.gauge.fill(&b.Src, &b.Gauge) }, nil},
		{"otel_metrics_sum", b.Sum.Len(), func() proto.Input { return w.sum.fill(&b.Src, &b.Sum) }, nil},
		{"otel_metrics_histogram", b.Histogram.Len(), func() proto.Input { return w.hist.fill(&b.Src, &b.Histogram) }, nil},
		{"otel_metrics_exponential_histogram", b.ExpHistogram.Len(), func() proto.Input { return w.exp.fill(&b.Src, &b.ExpHistogram) }, nil},
		{"otel_metrics_summary", b.Summary.Len(), func() proto.Input { return w.summ.fill(&b.Src, &b.Summary) }, nil},
	}
	for _, p := range parts {
		if p.n == 0 {
			continue
		}
		in := p.fill()
		err := w.insert(ctx, p.table, in, p.more, token+"/"+p.table)
		in.Reset()
		if err != nil {
			return fmt.Errorf("insert %d rows into %s: %w", p.n, p.table, err)
		}
	}
	return nil
}

// insertSettings are the settings of every insert besides its
// insert_deduplication_token.
//
// On a cluster the writer inserts into the Distributed tables (the plain
// names), not into the <name>_local tables of one shard, and it must do so
// in the foreground. The Distributed table splits a block by the sharding
// key and forwards the insert, token included, to one replica of each
// shard; with distributed_foreground_insert the insert returns only when
// every shard has committed its part. A retry of a failed insert, through
// any node, splits the same rows the same way (the keys are deterministic),
// so shards that committed their part drop it as a duplicate of the token
// and the others store theirs: exactly once. In the background mode the
// insert is acknowledged once queued on the receiving node's disk, so an
// acknowledged batch can still be lost with that node, and the queue may
// batch several inserts into one block, which defeats the token.
// Inserting into _local tables instead would tie a batch to the shard of
// the address it happened to use: a retry through another address would
// land on another shard, whose deduplication log has never seen the token.
func insertSettings(cluster bool) []ch.Setting {
	s := []ch.Setting{
		{Key: "insert_deduplicate", Value: "1", Important: true},
		// This ClickHouse build enables async inserts by default; an
		// async insert's deduplication differs, so say it every time.
		{Key: "async_insert", Value: "0", Important: true},
		{Key: "deduplicate_blocks_in_dependent_materialized_views", Value: "1"},
	}
	if cluster {
		s = append(s, ch.Setting{Key: "distributed_foreground_insert", Value: "1", Important: true})
	}
	return s
}

func (w *TelemetryWriter) insert(ctx context.Context, table string, in proto.Input, more func(context.Context) error, token string) error {
	p := w.pools[int(w.next.Add(1))%len(w.pools)]
	return p.Do(ctx, ch.Query{
		Body:     in.Into(table),
		Input:    in,
		OnInput:  more,
		Settings: append([]ch.Setting{{Key: "insert_deduplication_token", Value: token, Important: true}}, w.settings...),
	})
}

// IsPermanent reports whether err means ClickHouse rejected the data itself
// (retrying the same rows cannot succeed) rather than a transient failure.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var ex *ch.Exception
	if errors.As(err, &ex) {
		return permanentCode(int32(ex.Code))
	}
	return false
}

// permanentCode lists ClickHouse error codes that condemn the data: type
// and parse errors, values too large, unknown columns from a schema that
// does not match. Everything else (network, timeouts, too many parts,
// memory limits, shutting down, readonly replica) is worth retrying.
func permanentCode(c int32) bool {
	switch c {
	case 6, // CANNOT_PARSE_TEXT
		27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
		41,  // CANNOT_PARSE_DATETIME
		53,  // TYPE_MISMATCH
		69,  // ARGUMENT_OUT_OF_BOUND
		70,  // CANNOT_CONVERT_TYPE
		72,  // CANNOT_PARSE_NUMBER
		117, // INCORRECT_DATA
		131, // TOO_LARGE_STRING_SIZE
		321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
		349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
		407: // DECIMAL_OVERFLOW
		return true
	}
	return false
}

// blockRows is the most rows of one block of a logs insert.
const blockRows = 10_000

// logsView is rows [from, to) of r, sharing its memory; the log attribute
// offsets, which count from the first row, are rebased into *offs.
func logsView(r *otlp.LogRows, from, to int, offs *[]uint64) otlp.LogRows {
	v := otlp.LogRows{
		Timestamp: r.Timestamp[from:to], TraceId: r.TraceId[from:to], SpanId: r.SpanId[from:to], TraceFlags: r.TraceFlags[from:to],
		SeverityText: r.SeverityText[from:to], SeverityNumber: r.SeverityNumber[from:to], ServiceName: r.ServiceName[from:to],
		Body: r.Body[from:to], ResourceSchemaUrl: r.ResourceSchemaUrl[from:to], ScopeSchemaUrl: r.ScopeSchemaUrl[from:to],
		ScopeName: r.ScopeName[from:to], ScopeVersion: r.ScopeVersion[from:to], EventName: r.EventName[from:to],
		ResourceAttributes: sharedView(&r.ResourceAttributes, from, to),
		ScopeAttributes:    sharedView(&r.ScopeAttributes, from, to),
	}
	v.Environment, v.ServiceVersion = r.Environment[from:to], r.ServiceVersion[from:to]
	v.DeployId, v.DeployVersion = r.DeployId[from:to], r.DeployVersion[from:to]
	a := &r.LogAttributes
	base := uint64(0)
	if from > 0 {
		base = a.Offsets[from-1]
	}
	end := base
	if to > from {
		end = a.Offsets[to-1]
	}
	*offs = (*offs)[:0]
	for _, o := range a.Offsets[from:to] {
		*offs = append(*offs, o-base)
	}
	v.LogAttributes = otlp.Attrs{Keys: a.Keys[base:end], Values: a.Values[base:end], Offsets: *offs}
	return v
}

// sharedView is rows [from, to) of a; the stored maps are shared whole.
func sharedView(a *otlp.SharedAttrs, from, to int) otlp.SharedAttrs {
	return otlp.SharedAttrs{Keys: a.Keys, Values: a.Values, From: a.From[from:to], To: a.To[from:to]}
}

package worker

import (
	"github.com/VictoriaMetrics/metrics"
)

type workerMetrics struct {
	records, messages, batches, retries, replayed, claimsLost *metrics.Counter
	batchRecords                                              *metrics.PrometheusHistogram
	insertSeconds                                             *metrics.PrometheusHistogram
	pending, ackPending                                       *metrics.Gauge
	// The telemetry stream's size and bound (-1: none), and what the
	// workers purged of it once written.
	streamBytes, streamMaxBytes *metrics.Gauge
	trimmedBytes                *metrics.Counter
}

func newWorkerMetrics() *workerMetrics {
	return &workerMetrics{
		records:        metrics.GetOrCreateCounter("faultline_worker_records_committed_total"),
		messages:       metrics.GetOrCreateCounter("faultline_worker_messages_committed_total"),
		batches:        metrics.GetOrCreateCounter("faultline_worker_batches_total"),
		retries:        metrics.GetOrCreateCounter("faultline_worker_retries_total"),
		replayed:       metrics.GetOrCreateCounter("faultline_worker_messages_replayed_total"),
		claimsLost:     metrics.GetOrCreateCounter("faultline_worker_claims_lost_total"),
		batchRecords:   metrics.GetOrCreatePrometheusHistogramExt("faultline_worker_batch_records", []float64{100, 1000, 10000, 50000, 100000, 250000, 1000000}),
		insertSeconds:  metrics.GetOrCreatePrometheusHistogram("faultline_worker_insert_seconds"),
		pending:        metrics.GetOrCreateGauge("faultline_worker_consumer_pending", nil),
		ackPending:     metrics.GetOrCreateGauge("faultline_worker_consumer_ack_pending", nil),
		streamBytes:    metrics.GetOrCreateGauge("faultline_worker_stream_bytes", nil),
		streamMaxBytes: metrics.GetOrCreateGauge("faultline_worker_stream_max_bytes", nil),
		trimmedBytes:   metrics.GetOrCreateCounter("faultline_worker_stream_trimmed_bytes_total"),
	}
}

func (m *workerMetrics) deadLettered(kind string) *metrics.Counter {
	return metrics.GetOrCreateCounter(`faultline_worker_dead_lettered_total{reason="` + kind + `"}`)
}

package worker

import (
	"fmt"
	"time"
)

// Config is the worker part of faultline's settings (FAULTLINE_WORKER_*).
type Config struct {
	Consumer      string        `envconfig:"CONSUMER" default:"faultline-telemetry" desc:"durable consumer shared by all workers"`
	LedgerBucket  string        `envconfig:"LEDGER_BUCKET" default:"faultline_batches" desc:"KV bucket recording in-flight batches (exactly-once)"`
	BatchRecords  int           `envconfig:"BATCH_RECORDS" default:"50000" desc:"flush a batch when it holds this many records"`
	BatchBytes    int           `envconfig:"BATCH_BYTES" default:"67108864" desc:"flush a batch when its payloads, decompressed, reach this many bytes"`
	BatchWait     time.Duration `envconfig:"BATCH_WAIT" default:"1s" desc:"flush a batch at this age even when small"`
	AckWait       time.Duration `envconfig:"ACK_WAIT" default:"5m" desc:"redelivery delay of an unacked message"`
	MaxAckPending int           `envconfig:"MAX_ACK_PENDING" default:"2000" desc:"messages in flight over all workers"`
	PullMessages  int           `envconfig:"PULL_MESSAGES" default:"32" desc:"messages buffered per worker (32 OTLP requests of 1000 records are about 10 MB)"`
	PullBytes     int           `envconfig:"PULL_BYTES" default:"33554432" desc:"bytes of messages, as stored (compressed), buffered per worker"`
	InsertTimeout time.Duration `envconfig:"INSERT_TIMEOUT" default:"60s" desc:"timeout of one insert attempt"`
	RetryMax      time.Duration `envconfig:"RETRY_MAX_INTERVAL" default:"30s" desc:"longest wait between insert retries"`
	Aggregates    bool          `envconfig:"AGGREGATES" default:"true" desc:"publish per-minute aggregates for incident detection (off: telemetry only)"`
	GCPercent     int           `envconfig:"GC_PERCENT" default:"50" desc:"Go GC target of a worker process (GOGC, when set, wins): 50 keeps peak memory near 180 MB with 50k-record batches (about 240 MB at 100) for a few percent more CPU; 0 or 100 is Go's default"`
}

// Validate checks the settings.
func (c *Config) Validate() error {
	switch {
	case c.Consumer == "":
		return fmt.Errorf("FAULTLINE_WORKER_CONSUMER: must not be empty")
	case c.LedgerBucket == "":
		return fmt.Errorf("FAULTLINE_WORKER_LEDGER_BUCKET: must not be empty")
	case c.BatchRecords < 1:
		return fmt.Errorf("FAULTLINE_WORKER_BATCH_RECORDS: %d, need at least 1", c.BatchRecords)
	case c.BatchBytes < 1:
		return fmt.Errorf("FAULTLINE_WORKER_BATCH_BYTES: %d, need at least 1", c.BatchBytes)
	case c.BatchWait <= 0:
		return fmt.Errorf("FAULTLINE_WORKER_BATCH_WAIT: must be positive")
	case c.AckWait < 10*time.Second:
		return fmt.Errorf("FAULTLINE_WORKER_ACK_WAIT: %s, need at least 10s", c.AckWait)
	case c.BatchWait*4 > c.AckWait:
		return fmt.Errorf("FAULTLINE_WORKER_ACK_WAIT (%s) must be at least 4x FAULTLINE_WORKER_BATCH_WAIT (%s)", c.AckWait, c.BatchWait)
	case c.MaxAckPending < 1:
		return fmt.Errorf("FAULTLINE_WORKER_MAX_ACK_PENDING: need at least 1")
	case c.PullMessages < 1:
		return fmt.Errorf("FAULTLINE_WORKER_PULL_MESSAGES: need at least 1")
	case c.PullBytes < 1<<20:
		return fmt.Errorf("FAULTLINE_WORKER_PULL_BYTES: %d, need at least 1 MiB (one OTLP batch)", c.PullBytes)
	case c.InsertTimeout <= 0:
		return fmt.Errorf("FAULTLINE_WORKER_INSERT_TIMEOUT: must be positive")
	case c.GCPercent != 0 && c.GCPercent < 10:
		return fmt.Errorf("FAULTLINE_WORKER_GC_PERCENT: %d, need at least 10 (0 leaves Go's default)", c.GCPercent)
	case c.RetryMax <= 0:
		return fmt.Errorf("FAULTLINE_WORKER_RETRY_MAX_INTERVAL: must be positive")
	}
	return nil
}

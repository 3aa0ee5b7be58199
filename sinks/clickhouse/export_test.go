package clickhouse

// WithoutCoordination makes c render cluster mode's Distributed tables
// without ON CLUSTER and over plain MergeTree, which the local test server
// (no Keeper) can execute.
func WithoutCoordination(c *Config) { c.noCoordination = true }

// Package worker consumes OTLP payloads from JetStream, decodes them into
// columnar batches and commits them to a sink (ClickHouse) exactly once.
//
// # Flow
//
// A durable pull consumer (Consume, capped by PullMaxMessages/PullMaxBytes
// so a client never passes the server's pending limit) hands each message to
// one batcher goroutine; the Consume callback only enqueues, because it runs
// serially. The batcher decodes every message as it arrives into the open
// batch and flushes it when it holds enough records or bytes, or is old
// enough. A flusher goroutine writes the previous batch while the next one
// fills, so decoding and inserting overlap, and a written batch's acks
// run while the next batch is written. Two pooled batches (one filling,
// one writing) bound the memory; rows go back to the pool once written.
//
// Any number of worker processes can share the consumer: JetStream spreads
// messages across them, and MaxAckPending bounds what is in flight overall.
//
// # Exactly once
//
// A message is acked only after every row derived from it is committed. The
// dangerous moment is a crash after the insert and before the ack: the
// messages come back, possibly to another worker and mixed with others. The
// design follows the exactly-once mode of ClickHouse's Kafka Connect sink:
//
//  1. Before inserting, the worker records the batch in a JetStream KV
//     bucket (the ledger) as claiming: the stream sequences it holds, keyed
//     by the batch token (random).
//  2. It claims each message (a KV create of claim.<group>.<seq>, which
//     fails when another batch holds it), leaves out those claimed
//     elsewhere or already below the consumer's ack floor, and then owns
//     the rest by compare-and-set of its entry from claiming to owned.
//  3. It inserts with insert_deduplication_token derived from that token;
//     the tables keep a deduplication window (non_replicated_deduplication_window
//     on plain MergeTree, the replicated window on a cluster).
//  4. It acks every message and waits for the server to confirm each ack
//     (DoubleAck), then deletes the ledger entry. Claims stay until the ack
//     floor passes their group of 1024 sequences, which then goes in one
//     purge.
//
// Every worker watches the ledger's entries. A redelivered message owned
// by a batch is not batched afresh: the worker re-forms that exact batch,
// fetching the entry's other messages from the stream by sequence, and
// inserts it again with the same token, which ClickHouse drops as a
// duplicate if the first insert had landed. Entries whose messages were not
// all confirmed acked stay until the consumer's ack floor passes them, so a
// late redelivery still finds its batch.
//
// A batch whose worker stalled or died while claiming is given up by the
// next worker that meets one of its claims (compare-and-set from claiming
// to abandoned), which takes the claim; the stalled worker's own
// compare-and-set to owned then fails and it inserts nothing. So a message
// is owned by one batch at a time and inserted under one token, however
// long a worker stalls. A message is also only put into a new batch within
// AckWait/2 of its delivery, which keeps such conflicts rare, and long
// inserts send InProgress.
//
// Limits: a replay must happen within the table's deduplication window
// (docs/exactly-once.md says when that is shorter than the ack wait), and
// a message that the stream dropped (max age) before its batch was
// replayed cannot be re-formed; the worker logs it and inserts what
// remains.
//
// # Bad input
//
// A payload that cannot be decoded goes to faultline.dlq.decode with the
// original payload and the reason, stream and sequence in headers, and is
// terminated, never blocking the stream. When the sink rejects a batch as
// invalid, the batch is split in halves until the offending message is
// isolated; it is dead-lettered as faultline.dlq.insert and the rest land.
package worker

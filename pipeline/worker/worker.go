package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faultline-dev/faultline/pipeline/broker"
	"github.com/faultline-dev/faultline/processors/otlp"
)

// Sink commits decoded batches. Write must be idempotent for a given token:
// writing the same batch again with the same token stores it once.
type Sink interface {
	Write(ctx context.Context, b *otlp.Batch, token string) error
}

// Options wire a worker to its surroundings.
type Options struct {
	Config Config
	NATS   broker.Config // stream and subject names, replicas
	Sink   Sink
	// IsPermanent reports whether a Write error means the rows are invalid
	// (split the batch and dead-letter the culprit) rather than transient
	// (retry). Nil treats every error as transient.
	IsPermanent func(error) bool
	// Prepare, when set, runs on every batch before it is written (for
	// enrichment). It must not fail.
	Prepare func(b *otlp.Batch)
	// Committed, when set, runs after a batch is committed and before its
	// messages are acked; an error retries it. It must be idempotent for a
	// token (publish with the token as message id). msgs says which rows
	// came from which stream message, in stream order.
	Committed func(ctx context.Context, b *otlp.Batch, token string, msgs []MessageRows) error
	Log       *slog.Logger
}

// Worker consumes the telemetry stream into the sink.
type Worker struct {
	o      Options
	js     jetstream.JetStream
	log    *slog.Logger
	ledger *ledger
	stream jetstream.Stream
	cons   jetstream.Consumer
	m      *workerMetrics

	pool chan *otlp.Batch

	// afterWrite is a fault-injection point for tests: it runs between a
	// committed insert and the acks.
	afterWrite func()
	// beforeClaim is one too: it runs after a batch's last check of how
	// long its messages were held, before it is recorded and claims them.
	beforeClaim func([]item)
	// beforeOwn runs after the claims, before the batch owns them.
	beforeOwn func([]item)
}

// MessageRows says which rows of a batch came from the stream message Seq:
// rows [LogsFrom, LogsTo) of its logs, [HistFrom, HistTo) of its
// histograms and [ExpFrom, ExpTo) of its exponential histograms. The
// Committed hook reads them to publish aggregates per message.
type MessageRows struct {
	Seq              uint64
	LogsFrom, LogsTo int
	HistFrom, HistTo int // rows of the Histogram table
	ExpFrom, ExpTo   int // rows of the ExpHistogram table
}

// item is one message in a batch: its stream sequence, where its rows are
// in the batch, and how to answer its delivery.
type item struct {
	logsFrom, logsTo int
	histFrom, histTo int
	expFrom, expTo   int
	seq              uint64
	subject          string
	hdr              nats.Header
	// ack answers the message's delivery; nil for a message fetched from
	// the stream to re-form a batch (only its deliverer can ack it). The
	// payload itself is not kept once decoded: a batch holds only its rows,
	// and the rare paths that need the bytes again fetch them by sequence.
	ack  *acker
	recv time.Time
}

type job struct {
	items  []item
	rows   *otlp.Batch
	bytes  int
	opened time.Time
	token  string         // set for a replay: the token it was recorded under
	part   bool           // a half of a split batch, whose token is derived from the batch's
	index  map[uint64]int // stream seq -> item, while the batch is open
}

// New prepares a worker; Run starts it.
func New(js jetstream.JetStream, o Options) (*Worker, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Sink == nil {
		return nil, errors.New("worker: no sink")
	}
	if o.IsPermanent == nil {
		o.IsPermanent = func(error) bool { return false }
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{o: o, js: js, log: o.Log, m: newWorkerMetrics(), pool: make(chan *otlp.Batch, 2)}
	for i := 0; i < cap(w.pool); i++ {
		w.pool <- otlp.NewBatch()
	}
	return w, nil
}

func (w *Worker) setup(ctx context.Context) error {
	var err error
	w.ledger, err = openLedger(ctx, w.js, w.o.Config.LedgerBucket, w.o.NATS.Replicas)
	if err != nil {
		return err
	}
	err = broker.Retry(ctx, w.log, "stream "+w.o.NATS.TelemetryStream, func(ctx context.Context) (err error) {
		w.stream, err = w.js.Stream(ctx, w.o.NATS.TelemetryStream)
		return err
	})
	if err != nil {
		return fmt.Errorf("telemetry stream %s: %w", w.o.NATS.TelemetryStream, err)
	}
	n := w.o.NATS
	err = broker.Retry(ctx, w.log, "consumer "+w.o.Config.Consumer, func(ctx context.Context) (err error) {
		w.cons, err = w.js.CreateOrUpdateConsumer(ctx, n.TelemetryStream, jetstream.ConsumerConfig{
			Durable:        w.o.Config.Consumer,
			Description:    "faultline workers: OTLP into ClickHouse",
			FilterSubjects: []string{n.LogsSubject, n.LogsSubject + ".>", n.MetricsSubject, n.MetricsSubject + ".>"},
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        w.o.Config.AckWait,
			MaxAckPending:  w.o.Config.MaxAckPending,
			MaxDeliver:     -1,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", w.o.Config.Consumer, err)
	}
	return nil
}

// Run consumes until ctx ends, then stops pulling, commits what it holds and
// returns. Errors setting up return at once.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.setup(ctx); err != nil {
		return err
	}
	// Work in flight finishes even after ctx ends; only hard failures of
	// the stack stop it (the process owner bounds shutdown time).
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	watchDone, err := w.ledger.watch(work)
	if err != nil {
		return err
	}

	in := make(chan jetstream.Msg, w.o.Config.PullMessages)
	cc, err := w.cons.Consume(func(m jetstream.Msg) { in <- m },
		jetstream.PullMaxMessagesWithBytesLimit(w.o.Config.PullMessages, w.o.Config.PullBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Warn("consume", "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", w.o.Config.Consumer, err)
	}

	jobs := make(chan *job, 1) // one batch filling while one is written
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); w.flusher(work, jobs) }()
	go func() { defer wg.Done(); w.housekeeping(ctx) }()
	go func() { defer wg.Done(); w.trimmer(ctx) }()

	w.batch(ctx, in, cc, jobs)
	close(jobs)
	wg.Wait()
	stopWork()
	<-watchDone
	return nil
}

// batch is the single goroutine that owns the open batch.
func (w *Worker) batch(ctx context.Context, in chan jetstream.Msg, cc jetstream.ConsumeContext, jobs chan<- *job) {
	cur := w.newJob()
	replays := map[string][]jetstream.Msg{}
	tick := time.NewTicker(w.o.Config.BatchWait / 4)
	defer tick.Stop()
	var replayAt time.Time

	flush := func() {
		if len(cur.items) == 0 {
			return
		}
		jobs <- cur
		cur = w.newJob()
	}
	flushReplays := func() {
		for token, msgs := range replays {
			j := w.replayJob(ctx, token, msgs)
			if j != nil {
				jobs <- j
			}
		}
		clear(replays)
	}
	handle := func(m jetstream.Msg) {
		meta, err := m.Metadata()
		if err != nil {
			w.log.Error("message without metadata", "subject", m.Subject(), "err", err)
			_ = m.Term()
			return
		}
		seq := meta.Sequence.Stream
		if meta.NumDelivered > 1 {
			if token, _, ok := w.ledger.lookup(seq); ok {
				if len(replays) == 0 {
					// Wait a little for the batch's other messages.
					replayAt = time.Now().Add(w.o.Config.BatchWait / 2)
				}
				replays[token] = append(replays[token], m)
				return
			}
		}
		if i, ok := cur.index[seq]; ok {
			// Delivered again while this batch was open (a batcher held
			// up behind a slow insert): one message, one item; the newer
			// delivery is the one to answer.
			cur.items[i].ack, cur.items[i].recv = w.acker(m), time.Now()
			return
		}
		if cur.opened.IsZero() {
			cur.opened = time.Now()
		}
		from, hfrom, efrom := cur.rows.Logs.Len(), cur.rows.Histogram.Len(), cur.rows.ExpHistogram.Len()
		size, err := w.appendMsg(cur.rows, m.Subject(), m.Headers(), m.Data())
		if err != nil {
			w.deadLetter(ctx, "decode", err.Error(), seq, m.Subject(), m.Headers(), m.Data(), w.acker(m))
			return
		}
		cur.index[seq] = len(cur.items)
		cur.items = append(cur.items, item{seq: seq, subject: m.Subject(), hdr: m.Headers(), ack: w.acker(m), recv: time.Now(),
			logsFrom: from, logsTo: cur.rows.Logs.Len(), histFrom: hfrom, histTo: cur.rows.Histogram.Len(),
			expFrom: efrom, expTo: cur.rows.ExpHistogram.Len()})
		cur.bytes += size
		if cur.rows.Records() >= w.o.Config.BatchRecords || cur.bytes >= w.o.Config.BatchBytes {
			flush()
		}
	}

	for {
		select {
		case m := <-in:
			handle(m)
		case <-tick.C:
			if len(cur.items) > 0 && time.Since(cur.opened) >= w.o.Config.BatchWait {
				flush()
			}
			if len(replays) > 0 && time.Now().After(replayAt) {
				flushReplays()
			}
		case <-ctx.Done():
			// Stop pulling; what the client already holds is still handled.
			cc.Drain()
			deadline := time.After(5 * time.Second)
		drain:
			for {
				select {
				case m := <-in:
					handle(m)
				case <-cc.Closed():
					break drain
				case <-deadline:
					cc.Stop()
					break drain
				}
			}
			for len(in) > 0 {
				handle(<-in)
			}
			flushReplays()
			flush()
			w.putRows(cur.rows)
			return
		}
	}
}

func (w *Worker) newJob() *job {
	return &job{rows: <-w.pool, index: map[uint64]int{}}
}

func (w *Worker) putRows(b *otlp.Batch) {
	b.Reset()
	w.pool <- b
}

// replayJob re-forms a recorded batch from the messages redelivered to this
// worker and, for the rest, the stream itself.
func (w *Worker) replayJob(ctx context.Context, token string, msgs []jetstream.Msg) *job {
	_, e, ok := w.ledger.lookup(seqOf(msgs[0]))
	if !ok {
		// Released meanwhile: its batch is committed and acked by another
		// worker, so these are duplicates of acked messages. Ack them.
		for _, m := range msgs {
			_ = m.Ack()
		}
		return nil
	}
	held := make(map[uint64]jetstream.Msg, len(msgs))
	for _, m := range msgs {
		held[seqOf(m)] = m
	}
	j := w.newJob()
	j.token, j.opened = token, time.Now()
	for _, seq := range e.Seqs {
		it := item{seq: seq, recv: time.Now()}
		var data []byte
		if m, ok := held[seq]; ok {
			it.subject, it.hdr, data, it.ack = m.Subject(), m.Headers(), m.Data(), w.acker(m)
		} else {
			raw, err := w.stream.GetMsg(ctx, seq)
			if err != nil {
				w.log.Error("re-forming batch: message gone from the stream; inserting the rest", "token", token, "seq", seq, "err", err)
				continue
			}
			it.subject, it.hdr, data = raw.Subject, raw.Header, raw.Data
		}
		it.logsFrom, it.histFrom, it.expFrom = j.rows.Logs.Len(), j.rows.Histogram.Len(), j.rows.ExpHistogram.Len()
		size, err := w.appendMsg(j.rows, it.subject, it.hdr, data)
		if err != nil {
			// Deterministic decoding: this cannot pass the first time and
			// fail now. Keep the stream moving all the same.
			w.deadLetter(ctx, "decode", err.Error(), seq, it.subject, it.hdr, data, it.ack)
			continue
		}
		it.logsTo, it.histTo, it.expTo = j.rows.Logs.Len(), j.rows.Histogram.Len(), j.rows.ExpHistogram.Len()
		j.items = append(j.items, it)
		j.bytes += size
	}
	w.m.replayed.Add(len(msgs))
	w.log.Info("re-forming a recorded batch after redelivery", "token", token, "messages", len(e.Seqs), "redelivered_here", len(msgs))
	return j
}

// flusher writes batches one after another. Acking a written batch (a
// round trip per message, then the ledger release) overlaps writing the
// next one, so ClickHouse is not left idle meanwhile; the rows go back to
// the pool as soon as they are written.
func (w *Worker) flusher(ctx context.Context, jobs <-chan *job) {
	acks := make(chan func(), 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range acks {
			f()
		}
	}()
	for j := range jobs {
		finish := w.commit(ctx, j)
		w.putRows(j.rows) // acks need only the messages
		if finish != nil {
			acks <- finish
		}
	}
	close(acks)
	<-done
}

// commitNow commits a batch and acks it before returning.
func (w *Worker) commitNow(ctx context.Context, j *job) {
	if finish := w.commit(ctx, j); finish != nil {
		finish()
	}
}

// commit records and writes one batch; it returns what acks it and
// releases its ledger entry, or nil when there is nothing to ack (an empty
// or split batch, or a shutdown that leaves the messages to redelivery).
func (w *Worker) commit(ctx context.Context, j *job) (finish func()) {
	replay := j.token != ""
	if !replay {
		// A message held longer than half the ack wait may be redelivered
		// to another worker any moment; leave it to that redelivery.
		limit := w.o.Config.AckWait / 2
		fresh := j.items[:0]
		stale := 0
		for _, it := range j.items {
			if time.Since(it.recv) > limit {
				stale++
				continue
			}
			fresh = append(fresh, it)
		}
		if stale > 0 {
			w.log.Warn("leaving messages held too long to redelivery", "messages", stale)
			j.items = fresh
			w.redecode(ctx, j)
		}
		if len(j.items) == 0 {
			return nil
		}
	}
	token := j.token
	if !replay {
		var ok bool
		if token, ok = w.claim(ctx, j); !ok {
			return nil
		}
	}
	if w.o.Prepare != nil {
		w.o.Prepare(j.rows)
	}
	start := time.Now()
	var perm error
	err := w.retry(ctx, j, "insert", func(ctx context.Context) error {
		ictx, cancel := context.WithTimeout(ctx, w.o.Config.InsertTimeout)
		defer cancel()
		err := w.o.Sink.Write(ictx, j.rows, token)
		if err != nil && w.o.IsPermanent(err) {
			perm = err
			return backoff.Permanent(err)
		}
		return err
	})
	if perm != nil {
		// The entry stays until the ack floor passes it (collect): a half
		// may have left a message unacked (one fetched from the stream to
		// re-form the batch, an unconfirmed ack, a dead letter not stored),
		// and such a message must still find its batch when it comes back.
		w.split(ctx, j, token, perm)
		return nil
	}
	if err != nil {
		return nil
	}
	w.m.insertSeconds.UpdateDuration(start)
	if w.o.Committed != nil {
		msgs := make([]MessageRows, len(j.items))
		for i, it := range j.items {
			msgs[i] = MessageRows{Seq: it.seq, LogsFrom: it.logsFrom, LogsTo: it.logsTo, HistFrom: it.histFrom, HistTo: it.histTo,
				ExpFrom: it.expFrom, ExpTo: it.expTo}
		}
		slices.SortFunc(msgs, func(a, b MessageRows) int { return cmp.Compare(a.Seq, b.Seq) })
		if err := w.retry(ctx, j, "after commit", func(ctx context.Context) error { return w.o.Committed(ctx, j.rows, token, msgs) }); err != nil {
			return nil
		}
	}
	if w.afterWrite != nil {
		w.afterWrite()
	}
	records := j.rows.Records()
	return func() {
		all := w.ackAll(ctx, j.items)
		if all && !replay {
			_ = w.ledger.release(ctx, token)
		}
		w.m.batches.Inc()
		w.m.batchRecords.Update(float64(records))
		w.m.records.Add(records)
		w.m.messages.Add(len(j.items))
	}
}

// claim makes a fresh batch the owner of its messages: it records the
// batch as claiming them, claims each (claimAll), leaves out those another
// batch holds or that are already acked (below the ack floor), and then
// turns the entry into the owner of the rest, unless another worker gave
// the batch up meanwhile. Only an owning batch is inserted, so a message
// is never inserted under two tokens, however long a worker stalls between
// taking it and this point. false: nothing of the batch is to be inserted.
func (w *Worker) claim(ctx context.Context, j *job) (token string, ok bool) {
	if w.beforeClaim != nil {
		w.beforeClaim(j.items)
	}
	seqs := make([]uint64, len(j.items))
	for i, it := range j.items {
		seqs[i] = it.seq
	}
	slices.Sort(seqs)
	token = newBatchToken()
	e := entry{Stream: w.o.NATS.TelemetryStream, Seqs: seqs, Since: time.Now().Unix()}
	var rev uint64
	err := w.retry(ctx, j, "record batch", func(ctx context.Context) (err error) {
		rev, err = w.ledger.begin(ctx, token, e)
		if errors.Is(err, errBatchLost) {
			return backoff.Permanent(err)
		}
		return err
	})
	if errors.Is(err, errBatchLost) {
		w.batchLost(ctx, j, token)
		return "", false
	}
	if err != nil {
		return "", false // shutting down hard: messages will be redelivered
	}
	var held []uint64
	if err := w.retry(ctx, j, "claim batch", func(ctx context.Context) (err error) {
		if held, err = w.ledger.claimAll(ctx, token, seqs); err != nil {
			return err
		}
		// Claims of acked messages are dropped once the ack floor passes
		// them: a message this batch could claim again only because of
		// that was stored by another batch. Read after claiming, the floor
		// shows it.
		info, err := w.cons.Info(ctx)
		if err != nil {
			return err
		}
		held = slices.DeleteFunc(held, func(s uint64) bool { return s <= info.AckFloor.Stream })
		return nil
	}); err != nil {
		return "", false
	}
	if lost := len(seqs) - len(held); lost > 0 {
		w.m.claimsLost.Add(lost)
		w.log.Warn("messages of this batch are held by another batch or already stored; leaving them to it",
			"token", token, "messages", lost)
	}
	if len(held) == 0 {
		_ = w.ledger.release(ctx, token)
		return "", false
	}
	e.Seqs = held
	if w.beforeOwn != nil {
		w.beforeOwn(j.items)
	}
	err = w.retry(ctx, j, "own batch", func(ctx context.Context) error {
		err := w.ledger.own(ctx, token, e, rev)
		if errors.Is(err, errBatchLost) {
			return backoff.Permanent(err)
		}
		return err
	})
	if errors.Is(err, errBatchLost) {
		w.m.claimsLost.Add(len(held))
		w.batchLost(ctx, j, token)
		return "", false
	}
	if err != nil {
		return "", false
	}
	if len(held) < len(j.items) {
		kept := j.items[:0]
		for _, it := range j.items {
			if _, ok := slices.BinarySearch(held, it.seq); ok {
				kept = append(kept, it)
			}
		}
		j.items = kept
		w.redecode(ctx, j)
	}
	return token, true
}

// batchLost returns the messages of a batch another worker gave up while
// this one stalled, those whose claims it still holds (nobody took them),
// to be batched afresh at once. Not the others: JetStream applies a nak to
// the message, whoever holds its current delivery, and the worker that
// took them is working on them.
func (w *Worker) batchLost(ctx context.Context, j *job, token string) {
	w.log.Warn("this batch was given up by another worker while this one stalled; returning its messages", "token", token)
	for _, it := range j.items {
		if it.ack != nil && w.ledger.holds(ctx, token, it.seq) {
			_ = it.ack.nakWithDelay(0)
		}
	}
}

// retry runs f with exponential backoff until it succeeds, fails
// permanently or ctx ends, keeping the batch's messages from being
// redelivered meanwhile.
func (w *Worker) retry(ctx context.Context, j *job, what string, f func(context.Context) error) error {
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(w.o.Config.RetryMax),
		backoff.WithMaxElapsedTime(0)), ctx)
	attempt := 0
	lastProgress := time.Now()
	return backoff.Retry(func() error {
		attempt++
		err := f(ctx)
		if err == nil {
			return nil
		}
		var p *backoff.PermanentError
		if errors.As(err, &p) {
			return err
		}
		w.m.retries.Inc()
		w.log.Warn("retrying", "step", what, "attempt", attempt, "messages", len(j.items), "err", err)
		if time.Since(lastProgress) > w.o.Config.AckWait/4 {
			for _, it := range j.items {
				if it.ack != nil {
					_ = it.ack.inProgress()
				}
			}
			lastProgress = time.Now()
		}
		return err
	}, b)
}

// ackAll acks every message it delivered and waits for the server to
// confirm; it reports whether all were confirmed.
func (w *Worker) ackAll(ctx context.Context, items []item) bool {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	sem := make(chan struct{}, 32)
	for _, it := range items {
		if it.ack == nil {
			ok = false // another worker holds it; the ack floor releases the entry
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(it item) {
			defer func() { <-sem; wg.Done() }()
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := it.ack.doubleAck(actx); err != nil {
				mu.Lock()
				ok = false
				mu.Unlock()
				w.log.Warn("ack not confirmed; the message will be redelivered and its batch re-formed", "seq", it.seq, "err", err)
			}
		}(it)
	}
	wg.Wait()
	return ok
}

// split isolates the messages whose rows the sink rejects: halves are
// written on their own until a single message fails, which is
// dead-lettered. The halves are of the batch in sequence order and their
// tokens the batch's with /0 or /1 appended, so a worker re-forming the
// batch after a crash splits it the same way and ClickHouse drops the
// halves already written; they need no ledger entries or claims of their
// own, since the batch owns their messages.
func (w *Worker) split(ctx context.Context, j *job, token string, cause error) {
	if len(j.items) == 1 {
		it := j.items[0]
		data, err := w.payload(ctx, it.seq)
		if err != nil {
			w.log.Error("message to dead-letter gone from the stream", "seq", it.seq, "err", err)
		}
		w.deadLetter(ctx, "insert", cause.Error(), it.seq, it.subject, it.hdr, data, it.ack)
		return
	}
	w.log.Warn("sink rejected a batch; splitting it to isolate the bad message", "messages", len(j.items), "err", cause)
	slices.SortFunc(j.items, func(a, b item) int { return cmp.Compare(a.seq, b.seq) })
	mid := len(j.items) / 2
	for i, part := range [][]item{j.items[:mid], j.items[mid:]} {
		// A batch of its own, not from the pool: the pool may be empty
		// while the batcher fills the next batch.
		sub := &job{rows: otlp.NewBatch(), items: append([]item(nil), part...), token: token + "/" + strconv.Itoa(i), part: true}
		w.redecode(ctx, sub)
		w.commitNow(ctx, sub)
	}
}

// redecode rebuilds j.rows from j.items.
func (w *Worker) redecode(ctx context.Context, j *job) {
	j.rows.Reset()
	kept := j.items[:0]
	for _, it := range j.items {
		it.logsFrom, it.histFrom, it.expFrom = j.rows.Logs.Len(), j.rows.Histogram.Len(), j.rows.ExpHistogram.Len()
		data, err := w.payload(ctx, it.seq)
		if err != nil {
			w.log.Error("re-decoding a batch: message gone from the stream; leaving it out", "seq", it.seq, "err", err)
			continue
		}
		if _, err := w.appendMsg(j.rows, it.subject, it.hdr, data); err != nil {
			w.deadLetter(ctx, "decode", err.Error(), it.seq, it.subject, it.hdr, data, it.ack)
			continue
		}
		it.logsTo, it.histTo, it.expTo = j.rows.Logs.Len(), j.rows.Histogram.Len(), j.rows.ExpHistogram.Len()
		kept = append(kept, it)
	}
	j.items = kept
}

// deadLetter stores a message on the dead-letter subject and terminates
// it. If the dead letter cannot be stored, the message is left for
// redelivery rather than lost.
func (w *Worker) deadLetter(ctx context.Context, kind, reason string, seq uint64, subject string, hdr nats.Header, data []byte, m *acker) {
	w.log.Warn("dead-lettering message", "kind", kind, "seq", seq, "subject", subject, "reason", reason)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := broker.DeadLetter(dctx, w.js, kind, reason, w.o.NATS.TelemetryStream, seq, subject, hdr, data); err != nil {
		w.log.Error("dead letter not stored; leaving the message for redelivery", "seq", seq, "err", err)
		if m != nil {
			_ = m.nakWithDelay(10 * time.Second)
		}
		return
	}
	w.m.deadLettered(kind).Inc()
	if m != nil {
		_ = m.term("dead-lettered: " + kind)
	}
}

// housekeeping releases ledger entries below the ack floor and publishes the
// consumer's backlog as a metric.
func (w *Worker) housekeeping(ctx context.Context) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := w.cons.Info(ictx)
		if err == nil {
			w.m.pending.Set(float64(info.NumPending))
			w.m.ackPending.Set(float64(info.NumAckPending))
			w.ledger.collect(ictx, info.AckFloor.Stream)
		}
		cancel()
	}
}

// Trimming of the telemetry stream: how often each worker looks, and how
// full the stream must be before what was written is purged.
const (
	trimEvery = 2 * time.Second
	trimFill  = 0.9
)

// trimmer keeps history already written from filling the bounded
// telemetry stream (broker.TrimAcked), so that when the stream refuses
// new messages, it is full of backlog, and reports the stream's size.
// Every worker runs one; purging up to the same ack floor twice is
// harmless.
func (w *Worker) trimmer(ctx context.Context) {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tctx, cancel := context.WithTimeout(ctx, trimEvery)
		info, msgs, bytes, err := broker.TrimAcked(tctx, w.js, w.o.NATS.TelemetryStream, trimFill)
		switch {
		case err != nil:
			w.log.Warn("trim telemetry stream", "err", err)
		case msgs > 0:
			w.m.trimmedBytes.Add(int(bytes))
			w.log.Info("trimmed telemetry already written", "stream", w.o.NATS.TelemetryStream, "messages", msgs, "bytes", bytes)
		}
		if info != nil {
			w.m.streamBytes.Set(float64(info.State.Bytes))
			w.m.streamMaxBytes.Set(float64(info.Config.MaxBytes))
		}
		cancel()
	}
}

func seqOf(m jetstream.Msg) uint64 {
	meta, err := m.Metadata()
	if err != nil {
		return 0
	}
	return meta.Sequence.Stream
}

// signalOf tells logs from metrics by subject.
func signalOf(n broker.Config, subject string) otlp.Signal {
	if subject == n.MetricsSubject || strings.HasPrefix(subject, n.MetricsSubject+".") {
		return otlp.SignalMetrics
	}
	return otlp.SignalLogs
}

// appendMsg decodes one message's payload into rows and returns its size
// as decoded. A payload the gateway compressed is decompressed first.
func (w *Worker) appendMsg(rows *otlp.Batch, subject string, hdr nats.Header, data []byte) (int, error) {
	p, err := broker.Decode(hdr, data)
	if err != nil {
		return 0, err
	}
	if _, err := rows.Append(signalOf(w.o.NATS, subject), formatOf(hdr), p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// formatOf reads the payload encoding from the Content-Type header the
// gateway sets; without one (the Collector's NATS exporter) the decoder
// detects it.
func formatOf(h nats.Header) otlp.Format {
	ct := h.Get("Content-Type")
	switch {
	case ct == "":
		return otlp.FormatAuto
	case strings.Contains(ct, "json"):
		return otlp.FormatJSON
	case strings.Contains(ct, "protobuf"):
		return otlp.FormatProtobuf
	}
	return otlp.FormatAuto
}

// acker answers one delivery with JetStream's ack protocol on the message's
// reply subject. Keeping only the subject, not the message, lets a batch
// drop the payload once it is decoded.
type acker struct {
	nc    *nats.Conn
	reply string
}

func (w *Worker) acker(m jetstream.Msg) *acker { return &acker{nc: w.js.Conn(), reply: m.Reply()} }

// doubleAck acks and waits for the server to confirm it.
func (a *acker) doubleAck(ctx context.Context) error {
	_, err := a.nc.RequestWithContext(ctx, a.reply, []byte("+ACK"))
	return err
}

func (a *acker) inProgress() error { return a.nc.Publish(a.reply, []byte("+WPI")) }

func (a *acker) nakWithDelay(d time.Duration) error {
	return a.nc.Publish(a.reply, []byte(fmt.Sprintf(`-NAK {"delay": %d}`, d.Nanoseconds())))
}

func (a *acker) term(reason string) error { return a.nc.Publish(a.reply, []byte("+TERM "+reason)) }

// payload fetches a message's bytes from the stream again.
func (w *Worker) payload(ctx context.Context, seq uint64) ([]byte, error) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := w.stream.GetMsg(gctx, seq)
	if err != nil {
		return nil, err
	}
	return raw.Data, nil
}

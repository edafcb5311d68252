package completer

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgflow-go/pgflow/internal/batch"
)

// Batch and pacing limits.
const (
	AckPace      = time.Millisecond
	MaxAckBatch  = 1000
	MaxFailBatch = 500
)

// Ack is one successful delivery.
type Ack struct {
	ID    int64
	Token int64
}

// Fail is one failed delivery. Err and Took travel to the Failed callback.
type Fail struct {
	ID        int64
	Token     int64
	Attempt   int
	Text      string // the error as stored
	Permanent bool
	Delay     time.Duration
	Err       error
	Took      time.Duration
}

// FailResult is what the database did with one failure.
type FailResult struct {
	ID   int64
	Dead bool // dead-lettered; otherwise scheduled for a retry
}

// Config configures a Completer.
type Config struct {
	Name string
	Log  *slog.Logger
	// WriteAcks deletes acknowledged deliveries.
	WriteAcks func(ctx context.Context, ids, tokens []int64) error
	// WriteFails records failures and returns what happened to each one
	// whose token still matched.
	WriteFails func(ctx context.Context, items []Fail) ([]FailResult, error)
	// Acked is called after each ack write with the items written.
	Acked func(items []Ack)
	// Failed is called after each fail write with the items and results.
	Failed func(items []Fail, results []FailResult)
	// Queued, if set, is called after each Ack is queued: the owner's
	// claims may take it (TakeAcks).
	Queued func()
}

// Completer owns two flushers; Stop ends them.
type Completer struct {
	acks  *ackQueue
	fails *batch.Flusher[Fail]
}

// New starts a completer.
func New(cfg Config) *Completer {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Completer{}
	// Reused between writes: the queue writes one batch at a time.
	var ids, tokens []int64
	c.acks = newAckQueue(cfg.Name+" ack", cfg.Log, func(ctx context.Context, items []Ack) error {
		ids, tokens = ids[:0], tokens[:0]
		for _, it := range items {
			ids = append(ids, it.ID)
			tokens = append(tokens, it.Token)
		}
		if err := cfg.WriteAcks(ctx, ids, tokens); err != nil {
			return err
		}
		cfg.Acked(items)
		return nil
	}, cfg.Queued)
	c.fails = batch.New(cfg.Name+" fail", MaxFailBatch, cfg.Log, func(ctx context.Context, items []Fail) error {
		res, err := cfg.WriteFails(ctx, items)
		if err != nil {
			return err
		}
		cfg.Failed(items, res)
		return nil
	})
	return c
}

// Ack queues an acknowledgement. It returns false once stopping.
func (c *Completer) Ack(a Ack) bool { return c.acks.add(a) }

// PendingAcks is how many queued acknowledgements no write has taken yet.
func (c *Completer) PendingAcks() int { return c.acks.len() }

// TakeAcks appends up to MaxAckBatch queued acknowledgements to dst, for
// the caller to write in a transaction of its own (a claim's), and returns
// it. The caller must then call SettleAcks with them. Acked is not called
// for them: the caller frees their slots.
func (c *Completer) TakeAcks(dst []Ack) []Ack { return c.acks.take(dst, true) }

// SettleAcks reports what became of acknowledgements from TakeAcks: written,
// or not (they are queued again, to be written by the completer).
func (c *Completer) SettleAcks(items []Ack, written bool) { c.acks.settle(items, written) }

// Fail queues a failure. It returns false once stopping.
func (c *Completer) Fail(f Fail) bool { return c.fails.Add(f) }

// Stop writes what is queued, trying until ctx is done. It reports how many
// items were dropped unwritten.
func (c *Completer) Stop(ctx context.Context) int {
	return c.acks.shutdown(ctx) + c.fails.Stop(ctx)
}

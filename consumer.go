package pgflow

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow/internal/query"
)

// The consumer is assembled from internal parts, one job each: the fetcher
// claims (internal/fetcher), the executor runs handlers (internal/executor),
// the completer writes outcomes (internal/completer), the rescuer takes back
// expired leases (internal/rescuer) and notify listens for wake-ups. In this
// package: consumer.go registers consumers (ConsumerConfig, Consume,
// HandleJSON, AckTx); lifecycle.go starts and stops them; consumer_run.go
// adapts the parts to messages, events and settings for one Start…Stop span;
// wakeup.go wakes them; rescue.go takes back expired leases on demand.

// DefaultHandlerTimeout is ConsumerConfig.Timeout's default.
const DefaultHandlerTimeout = time.Minute

// DefaultBatchSize is ConsumerConfig.BatchSize's default with a
// BatchHandler.
const DefaultBatchSize = 100

// ConsumerConfig registers a handler for one queue: Handler, or
// BatchHandler with BatchSize.
type ConsumerConfig struct {
	Queue   string
	Handler Handler
	// BatchHandler, set instead of Handler, receives up to BatchSize
	// messages at once and reports an outcome per message (see
	// BatchHandler).
	BatchHandler BatchHandler
	// BatchSize is the most messages one BatchHandler call receives
	// (1-10000, default DefaultBatchSize). Only with BatchHandler.
	BatchSize int
	// Workers is how many handlers (or batch handler calls) run at once.
	// The consumer holds at most Workers + Prefetch deliveries (Workers ×
	// BatchSize with a BatchHandler): running, waiting for a worker, or
	// handled with the outcome not yet written. Default 1.
	Workers int
	// Prefetch is how many messages beyond Workers the consumer may claim
	// ahead of free workers (0-10000, default 0: a message is claimed only
	// for a free worker). Only with Handler: a BatchHandler's BatchSize
	// already claims many at once. With cheap handlers and few workers it
	// lets each claim take more messages, so fewer claim round trips
	// drain a backlog. The cost: a prefetched message waits for a worker
	// while holding its lease (extended by the heartbeat); it is handed
	// back, not counted as a failed attempt, once it has waited half its
	// queue's lease time (checked with each heartbeat, every third of the
	// lease), and at Stop at once. A message of higher priority can wait
	// behind up to Prefetch messages already claimed, and a process killed
	// leaves up to Workers + Prefetch deliveries for their leases to
	// expire. A waiting message whose lease was lost, or ran out because
	// the heartbeat could not extend it, is dropped without running. The
	// default stays 0: prefetch pays only with cheap handlers, few workers
	// and a backlog, and it holds work away from other consumers' idle
	// workers.
	Prefetch int
	// MaxBatch bounds how many messages one claim takes. Default: the
	// deliveries the consumer may hold, at most 1000. A claim never takes
	// more than the consumer may still hold.
	MaxBatch int
	// Timeout bounds one handler run. Past it the handler's context is
	// cancelled with cause ErrHandlerTimeout and an error it then returns
	// fails the attempt (retried with backoff, dead-lettered when out of
	// retries); see Handler. Default DefaultHandlerTimeout (1 min); a
	// negative value disables it, and the lease is then extended for as long
	// as the handler runs.
	Timeout time.Duration
	// Declare, when set, declares the queue with these settings at Start;
	// otherwise the queue keeps its stored settings (created with defaults
	// if missing).
	Declare *QueueConfig
}

// Consume registers a consumer. Call it before Start; one consumer per queue
// and client.
func (c *Client) Consume(cfg ConsumerConfig) error {
	if err := ValidateQueueName(cfg.Queue); err != nil {
		return err
	}
	switch {
	case cfg.Handler == nil && cfg.BatchHandler == nil:
		return inputErr(ErrInvalidConfig, "handler", cfg.Queue, "is nil")
	case cfg.Handler != nil && cfg.BatchHandler != nil:
		return inputErr(ErrInvalidConfig, "handler", cfg.Queue, "and batch handler are both set; set one")
	case cfg.BatchHandler == nil && cfg.BatchSize != 0:
		return inputErr(ErrInvalidConfig, "batch_size", cfg.Queue, "needs a batch handler")
	case cfg.BatchHandler != nil && cfg.Prefetch != 0:
		return inputErr(ErrInvalidConfig, "prefetch", cfg.Queue, "is for single-message handlers; a batch handler claims ahead through batch_size")
	case cfg.Prefetch < 0 || cfg.Prefetch > 10000:
		return inputErr(ErrInvalidConfig, "prefetch", cfg.Queue, "must be 0-10000, got %d", cfg.Prefetch)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	if cfg.Workers < 1 || cfg.Workers > 10000 {
		return inputErr(ErrInvalidConfig, "workers", cfg.Queue, "must be 1-10000, got %d", cfg.Workers)
	}
	if cfg.BatchHandler != nil {
		if cfg.BatchSize == 0 {
			cfg.BatchSize = DefaultBatchSize
		}
		if cfg.BatchSize < 1 || cfg.BatchSize > 10000 {
			return inputErr(ErrInvalidConfig, "batch_size", cfg.Queue, "must be 1-10000, got %d", cfg.BatchSize)
		}
		if cfg.Workers*cfg.BatchSize > 100000 {
			return inputErr(ErrInvalidConfig, "batch_size", cfg.Queue, "times workers must be at most 100000, got %d × %d", cfg.BatchSize, cfg.Workers)
		}
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = min(cfg.held(), 1000)
	}
	cfg.MaxBatch = min(cfg.MaxBatch, cfg.held())
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultHandlerTimeout
	}
	if cfg.Declare != nil {
		d := *cfg.Declare
		if d.Name == "" {
			d.Name = cfg.Queue
		}
		if d.Name != cfg.Queue {
			return inputErr(ErrInvalidConfig, "declare.name", d.Name, "differs from the consumer's queue %q", cfg.Queue)
		}
		if err := d.normalize(); err != nil {
			return err
		}
		cfg.Declare = &d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClientStopped
	}
	if c.run != nil {
		return inputErr(ErrInvalidConfig, "consumer", cfg.Queue, "cannot be added while the client runs; Stop first")
	}
	if _, dup := c.consumers[cfg.Queue]; dup {
		return inputErr(ErrInvalidConfig, "consumer", cfg.Queue, "is already registered on this client")
	}
	c.consumers[cfg.Queue] = &consumer{cfg: cfg}
	return nil
}

// held is how many deliveries the consumer may hold at once.
func (cfg *ConsumerConfig) held() int {
	if cfg.BatchHandler != nil {
		return cfg.Workers * cfg.BatchSize
	}
	return cfg.Workers + cfg.Prefetch
}

// consumer is a registration; it never changes after Consume. What one
// Start…Stop span runs lives in consumerRun.
type consumer struct {
	cfg ConsumerConfig
}

// maxErrorBytes bounds the error text stored per attempt.
const maxErrorBytes = 8 << 10

// errorText is the error as stored: its message, cut to maxErrorBytes.
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorBytes {
		s = s[:maxErrorBytes] + "… (truncated)"
	}
	return s
}

// AckTx acknowledges m inside tx, so the handler's own writes and the
// acknowledgement commit together. It returns ErrLeaseLost if this delivery
// no longer holds the message (its claim token no longer matches). When the
// handler then returns nil, the consumer's own acknowledgement finds
// nothing left to do.
func (c *Client) AckTx(ctx context.Context, tx pgx.Tx, m *Message) error {
	if tx == nil || m == nil {
		return fmt.Errorf("%w: AckTx needs a transaction and a message", ErrInvalidConfig)
	}
	var n int
	if err := tx.QueryRow(ctx, c.q.Get(query.AckMessageTx), m.ID, m.token).Scan(&n); err != nil {
		return fmt.Errorf("pgflow: ack message %d: %w", m.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: message %d attempt %d", ErrLeaseLost, m.ID, m.Attempt)
	}
	return nil
}

// HandleJSON returns a Handler that decodes each payload into a T and
// calls fn with it. A payload that does not decode fails permanently (the
// message goes to the dead-letter queue at once: retrying cannot help), with
// an error that names the message and the type.
func HandleJSON[T any](fn func(ctx context.Context, m *Message, v T) error) Handler {
	return func(ctx context.Context, m *Message) error {
		var v T
		if err := json.Unmarshal(m.Payload, &v); err != nil {
			return Permanent(fmt.Errorf("pgflow: decode message %d of queue %s into %T: %w", m.ID, m.Queue, v, err))
		}
		return fn(ctx, m, v)
	}
}

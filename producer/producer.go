package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/backoff"
)

// Publisher writes a batch of messages atomically and returns their ids.
// *pgflow.Client is one; tests can wrap it to inject failures.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []pgflow.Outgoing) ([]int64, error)
}

// Config configures a Producer.
type Config struct {
	// Queue is where Publish sends messages. PublishTo can name any queue.
	Queue string
	// Workers is how many batches may be committing at once. Default 1.
	Workers int
	// MaxRetries is how many times a batch is retried after a transient
	// error before its publishes fail. 0 means no retry.
	MaxRetries int
	// RetryDelay is the first retry's delay; each further retry doubles it,
	// with jitter, up to MaxRetryDelay. 0 retries at once.
	RetryDelay time.Duration
	// MaxRetryDelay caps the backoff. Default 30 s.
	MaxRetryDelay time.Duration
	// Priority, when set, is the priority of messages published without
	// pgflow.WithPriority.
	Priority *int
	// MaxBatch bounds how many messages one commit carries. Default 500.
	MaxBatch int
	// WriteTimeout bounds one attempt to write a batch. Default 10 s.
	WriteTimeout time.Duration
	// IsTransient decides whether a failed write is worth retrying.
	// Default Transient.
	IsTransient func(error) bool
	// Logger receives a line per retried batch. Default slog.Default().
	Logger *slog.Logger
}

// Stats counts what a producer did.
type Stats struct {
	Published int64 // publishes acknowledged (committed)
	Failed    int64 // publishes that returned an error
	Batches   int64 // batches committed
	Retries   int64 // batch writes retried after a transient error
	Waiting   int   // publishes queued for a flusher right now
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("producer: closed")

// Producer batches concurrent publishes. It is safe for concurrent use;
// Close stops its flusher goroutines.
type Producer struct {
	pub   Publisher
	cfg   Config
	retry backoff.Policy

	in      chan *request
	mu      sync.RWMutex // held for reading while a request is being queued
	closed  bool
	abort   chan struct{} // closed when Close's context ends: stop retrying
	aborted sync.Once
	done    chan struct{} // closed when every flusher returned
	wg      sync.WaitGroup

	published, failed, batches, retries atomic.Int64
}

type request struct {
	ctx    context.Context
	msg    pgflow.Outgoing
	result chan result // buffered: the flusher never blocks on it
}

type result struct {
	id  int64
	err error
}

// New starts a producer's flushers. pub is usually a *pgflow.Client.
func New(pub Publisher, cfg Config) (*Producer, error) {
	if pub == nil {
		return nil, fmt.Errorf("%w: producer needs a publisher", pgflow.ErrInvalidConfig)
	}
	if cfg.Queue != "" {
		if err := pgflow.ValidateQueueName(cfg.Queue); err != nil {
			return nil, err
		}
	}
	switch {
	case cfg.Workers == 0:
		cfg.Workers = 1
	case cfg.Workers < 0 || cfg.Workers > 1000:
		return nil, &pgflow.InputError{Kind: pgflow.ErrInvalidConfig, Field: "workers", Reason: fmt.Sprintf("must be 1-1000, got %d", cfg.Workers)}
	}
	if cfg.MaxRetries < 0 {
		return nil, &pgflow.InputError{Kind: pgflow.ErrInvalidConfig, Field: "max_retries", Reason: fmt.Sprintf("%d is negative", cfg.MaxRetries)}
	}
	if cfg.RetryDelay < 0 {
		return nil, &pgflow.InputError{Kind: pgflow.ErrInvalidConfig, Field: "retry_delay", Reason: fmt.Sprintf("%v is negative", cfg.RetryDelay)}
	}
	if cfg.MaxRetryDelay <= 0 {
		cfg.MaxRetryDelay = 30 * time.Second
	}
	if cfg.MaxRetryDelay < cfg.RetryDelay {
		cfg.MaxRetryDelay = cfg.RetryDelay
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.IsTransient == nil {
		cfg.IsTransient = Transient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Producer{
		pub:   pub,
		cfg:   cfg,
		retry: backoff.Policy{Base: cfg.RetryDelay, Max: cfg.MaxRetryDelay},
		in:    make(chan *request, 4*cfg.MaxBatch),
		abort: make(chan struct{}),
		done:  make(chan struct{}),
	}
	for range cfg.Workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.flushLoop()
		}()
	}
	go func() {
		p.wg.Wait()
		close(p.done)
	}()
	return p, nil
}

// Queue returns the producer's default queue.
func (p *Producer) Queue() string { return p.cfg.Queue }

// Publish sends payload to the producer's queue and returns the message id
// once the message has committed.
func (p *Producer) Publish(ctx context.Context, payload any, opts ...pgflow.PublishOption) (int64, error) {
	if p.cfg.Queue == "" {
		return 0, &pgflow.InputError{Kind: pgflow.ErrInvalidQueueName, Field: "queue", Reason: "the producer has no default queue; use PublishTo"}
	}
	return p.PublishTo(ctx, p.cfg.Queue, payload, opts...)
}

// PublishTo sends payload to queue through the producer's flushers and
// returns the message id once the message has committed. An error means the
// message was not acknowledged: it did not commit, or (when ctx ended while
// the write was in flight) its outcome is unknown.
func (p *Producer) PublishTo(ctx context.Context, queue string, payload any, opts ...pgflow.PublishOption) (int64, error) {
	id, err := p.publish(ctx, queue, payload, opts)
	if err != nil {
		p.failed.Add(1)
	} else {
		p.published.Add(1)
	}
	return id, err
}

func (p *Producer) publish(ctx context.Context, queue string, payload any, opts []pgflow.PublishOption) (int64, error) {
	if err := pgflow.ValidateQueueName(queue); err != nil {
		return 0, err
	}
	// Encode here, on the caller's goroutine, so a payload that cannot be
	// encoded fails alone instead of failing a whole batch.
	var body json.RawMessage
	switch v := payload.(type) {
	case json.RawMessage:
		body = v
	case []byte:
		body = v
	case nil:
		return 0, &pgflow.InputError{Kind: pgflow.ErrInvalidPayload, Field: "payload", Reason: "is nil; publish a JSON value"}
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return 0, &pgflow.InputError{Kind: pgflow.ErrInvalidPayload, Field: "payload", Reason: "cannot be encoded as JSON: " + err.Error()}
		}
		body = b
	}
	if !json.Valid(body) {
		return 0, &pgflow.InputError{Kind: pgflow.ErrInvalidPayload, Field: "payload", Reason: "is not valid JSON"}
	}
	if p.cfg.Priority != nil {
		opts = append([]pgflow.PublishOption{pgflow.WithPriority(*p.cfg.Priority)}, opts...)
	}
	req := &request{ctx: ctx, msg: pgflow.Outgoing{Queue: queue, Payload: body, Options: opts}, result: make(chan result, 1)}

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case p.in <- req:
	case <-ctx.Done():
		p.mu.RUnlock()
		return 0, ctx.Err()
	}
	p.mu.RUnlock()

	select {
	case r := <-req.result:
		return r.id, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("producer: gave up waiting for the commit, outcome unknown: %w", ctx.Err())
	}
}

// Close stops accepting publishes, writes what was queued (retrying until
// ctx ends) and stops the flushers. Publishes still unwritten when ctx ends
// fail. It does not close the client.
func (p *Producer) Close(ctx context.Context) error {
	go func() {
		select {
		case <-ctx.Done():
			p.aborted.Do(func() { close(p.abort) })
		case <-p.done:
		}
	}()
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.in)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		<-p.done // flushers fail what is left at once once aborted
		return ctx.Err()
	}
}

// Stats returns the producer's counters.
func (p *Producer) Stats() Stats {
	return Stats{Published: p.published.Load(), Failed: p.failed.Load(), Batches: p.batches.Load(), Retries: p.retries.Load(), Waiting: len(p.in)}
}

func (p *Producer) flushLoop() {
	batch := make([]*request, 0, p.cfg.MaxBatch)
	for {
		req, ok := <-p.in
		if !ok {
			return
		}
		batch = append(batch[:0], req)
	fill:
		for len(batch) < p.cfg.MaxBatch {
			select {
			case r, ok := <-p.in:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		p.write(batch)
	}
}

// write commits one batch, retrying transient failures, and answers every
// request in it.
func (p *Producer) write(batch []*request) {
	for attempt := 0; ; attempt++ {
		batch = dropCancelled(batch)
		if len(batch) == 0 {
			return
		}
		select {
		case <-p.abort:
			answerAll(batch, 0, ErrClosed)
			return
		default:
		}
		msgs := make([]pgflow.Outgoing, len(batch))
		for i, r := range batch {
			msgs[i] = r.msg
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.WriteTimeout)
		ids, err := p.pub.PublishBatch(ctx, msgs)
		cancel()
		if err == nil {
			if len(ids) != len(batch) {
				answerAll(batch, 0, fmt.Errorf("producer: publisher returned %d ids for %d messages", len(ids), len(batch)))
				return
			}
			p.batches.Add(1)
			for i, r := range batch {
				r.result <- result{id: ids[i]}
			}
			return
		}
		if !p.cfg.IsTransient(err) {
			if len(batch) > 1 {
				// One bad message must not fail the others: write each alone.
				for _, r := range batch {
					p.write([]*request{r})
				}
				return
			}
			answerAll(batch, 0, err)
			return
		}
		if attempt >= p.cfg.MaxRetries {
			answerAll(batch, 0, fmt.Errorf("producer: publish failed after %d retries: %w", attempt, err))
			return
		}
		p.retries.Add(1)
		d := p.retry.Delay(attempt + 1)
		p.cfg.Logger.Warn("producer: publish failed on a transient error; retrying", "messages", len(batch), "retry", attempt+1, "of", p.cfg.MaxRetries, "in", d,
			"may_have_committed", mayHaveCommitted(err), "err", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-p.abort:
			t.Stop()
			answerAll(batch, 0, fmt.Errorf("%w while retrying: %v", ErrClosed, err))
			return
		}
	}
}

// dropCancelled answers requests whose caller gave up (they are not written)
// and returns the rest.
func dropCancelled(batch []*request) []*request {
	keep := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.result <- result{err: err}
			continue
		}
		keep = append(keep, r)
	}
	return keep
}

func answerAll(batch []*request, id int64, err error) {
	for _, r := range batch {
		r.result <- result{id: id, err: err}
	}
}

// Transient reports whether err is worth retrying. It is true for every
// failure of the connection rather than of the statement: a closed or reset
// connection, EOF, network and dial errors, a refused connection, a server
// shutting down, crashing or starting up (57P01, 57P02, 57P03), idle-session
// timeouts (57P05, 25P03), SQLSTATE class 08; for serialization failures and
// deadlocks (40001, 40P01), lock timeouts (55P03) and a server out of
// resources (class 53); and for the timeout of one write attempt
// (context.DeadlineExceeded, pgconn.Timeout). Input errors, context.Canceled
// and every other SQL error (a constraint, bad data, a missing table) are
// permanent.
//
// A producer never hands a caller's context to a write: each attempt runs on
// a context of its own bounded by WriteTimeout, so a deadline seen here is
// that attempt's; a caller whose own context ended is answered with that
// context's error and its message is not written again.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var ie *pgflow.InputError
	if errors.As(err, &ie) || errors.Is(err, context.Canceled) {
		return false
	}
	// A server error decides by its code, even inside a connect error (a
	// wrong password is not worth retrying; "starting up" is).
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCode(pgErr.Code)
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	switch {
	case errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, net.ErrClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.As(err, &netErr), errors.As(err, &connectErr),
		pgconn.SafeToRetry(err), pgconn.Timeout(err),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// mayHaveCommitted reports whether a failed write's transaction may still
// have committed: the connection failed at a point where COMMIT may have
// been sent. A server error (the server answered), a failed connection
// attempt or a failure before anything was sent rules that out.
func mayHaveCommitted(err error) bool {
	var pgErr *pgconn.PgError
	var connectErr *pgconn.ConnectError
	return !errors.As(err, &pgErr) && !errors.As(err, &connectErr) && !pgconn.SafeToRetry(err)
}

// transientCode reports whether a SQLSTATE names a failure worth retrying.
func transientCode(code string) bool {
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now (starting up, shutting down)
		"57P05", // idle_session_timeout
		"25P03": // idle_in_transaction_session_timeout
		return true
	}
	return len(code) == 5 && (code[:2] == "08" || code[:2] == "53")
}

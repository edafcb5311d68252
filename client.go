package pgflow

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/internal/schema"
)

// Config configures a Client. The zero value is usable: schema "public",
// LISTEN/NOTIFY wake-ups with a 1 s polling fallback, 1 MiB payload limit.
type Config struct {
	// Schema holds pgflow's tables (created by `pgflow init` or migrate.Up).
	Schema string
	// Logger receives operational logs (lost connections, retries). Default
	// slog.Default().
	Logger *slog.Logger
	// ID names this client in pgflow_messages.locked_by. Default
	// "host:pid:random".
	ID string
	// MaxPayloadBytes limits a message's JSON payload. Default 1 MiB; a
	// negative value removes the limit.
	MaxPayloadBytes int
	// PollInterval is how often an idle consumer looks for work when no
	// notification arrives. Default 1 s; 100 ms in PollOnly mode.
	PollInterval time.Duration
	// PollOnly disables LISTEN/NOTIFY (for PgBouncer in transaction pooling
	// mode, where a session's LISTEN does not survive).
	PollOnly bool
	// NotifyDebounce is the shortest gap between two NOTIFYs this client
	// sends for Publish calls; publishes in between share one. Default 1 ms.
	NotifyDebounce time.Duration
	// RescueInterval is how often the client looks for expired leases.
	// Default 1 s.
	RescueInterval time.Duration
	// StrictQueues makes Publish fail with ErrQueueNotFound for a queue that
	// was never declared, instead of creating it with default settings.
	StrictQueues bool
	// Hooks receive lifecycle events.
	Hooks []EventHook
	// DisableStatsCounters stops the client from adding its delivery counts
	// (handled, failed, dead-lettered) to pgflow_queue_stats every 5 s, which
	// QueueStats.Windows reads. See stats.go.
	DisableStatsCounters bool
}

// Client publishes and consumes pgflow messages. It is safe for concurrent
// use. Publishing needs no Start; consumers run between Start and Stop.
type Client struct {
	pool     *pgxpool.Pool
	ownsPool bool
	q        *query.Set
	cfg      Config
	log      *slog.Logger
	hooks    []EventHook
	channel  string // NOTIFY channel, one per schema

	known sync.Map // queue name -> struct{}: queues known to exist

	notifier *notifier
	stats    *statsRecorder // nil when DisableStatsCounters

	// testHooks are set by tests before Start (export_test.go).
	testHooks struct {
		idle      func(queue string, wakePending bool)
		listening func()
	}

	mu        sync.Mutex
	consumers map[string]*consumer
	run       *runState // non-nil between Start and Stop
	closed    bool
}

// New returns a client on an existing pool. The pool stays the caller's.
func New(pool *pgxpool.Pool, cfg Config) (*Client, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrInvalidConfig)
	}
	if cfg.Schema == "" {
		cfg.Schema = schema.Default
	}
	q, err := query.Load(cfg.Schema)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s:%d:%04x", host, os.Getpid(), rand.IntN(1<<16))
	}
	switch {
	case cfg.MaxPayloadBytes == 0:
		cfg.MaxPayloadBytes = 1 << 20
	case cfg.MaxPayloadBytes < 0:
		cfg.MaxPayloadBytes = 0
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
		if cfg.PollOnly {
			cfg.PollInterval = 100 * time.Millisecond
		}
	}
	if cfg.NotifyDebounce <= 0 {
		cfg.NotifyDebounce = time.Millisecond
	}
	if cfg.RescueInterval <= 0 {
		cfg.RescueInterval = time.Second
	}
	c := &Client{
		pool:      pool,
		q:         q,
		cfg:       cfg,
		log:       cfg.Logger,
		hooks:     append([]EventHook(nil), cfg.Hooks...),
		channel:   "pgflow." + cfg.Schema,
		consumers: map[string]*consumer{},
	}
	if !cfg.PollOnly {
		c.notifier = newNotifier(c)
	}
	if !cfg.DisableStatsCounters {
		c.stats = newStatsRecorder(c)
		c.hooks = append(c.hooks, c.stats.record)
	}
	return c, nil
}

// Connect opens a pool for databaseURL and returns a client that owns it:
// Close closes the pool too.
func Connect(ctx context.Context, databaseURL string, cfg Config) (*Client, error) {
	pc, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: database url: %v", ErrInvalidConfig, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgflow: connect: %w", err)
	}
	c, err := New(pool, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	c.ownsPool = true
	return c, nil
}

// Pool returns the client's connection pool.
func (c *Client) Pool() *pgxpool.Pool { return c.pool }

// Schema returns the schema holding the client's tables.
func (c *Client) Schema() string { return c.cfg.Schema }

// ID returns the client's identity as recorded in locked_by.
func (c *Client) ID() string { return c.cfg.ID }

// Logger returns the client's logger.
func (c *Client) Logger() *slog.Logger { return c.log }

// Close stops consumers (as Stop with ctx), stops the notifier and closes
// the pool if the client owns it.
func (c *Client) Close(ctx context.Context) error {
	err := c.Stop(ctx)
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return err
	}
	if c.notifier != nil {
		c.notifier.Stop()
	}
	if c.stats != nil {
		c.stats.close(ctx)
	}
	if c.ownsPool {
		c.pool.Close()
	}
	return err
}

// QueueConfig declares a queue's settings.
type QueueConfig struct {
	Name string
	// MaxRetries is how many times a failed message is retried before it is
	// dead-lettered: a message is delivered at most MaxRetries+1 times.
	MaxRetries int
	// RetryDelay is the first retry's delay; each further retry doubles it
	// (with jitter), up to MaxRetryDelay. Default 1 s.
	RetryDelay time.Duration
	// MaxRetryDelay caps the backoff. Default 5 min.
	MaxRetryDelay time.Duration
	// LeaseTimeout is how long a consumer may hold a message without a
	// heartbeat before it is delivered again (SQS's visibility timeout).
	// Default 30 s.
	LeaseTimeout time.Duration
	// Priority is the default priority of messages published without one.
	Priority int
}

// DefaultQueueConfig returns the settings a queue gets when it is created on
// first use.
func DefaultQueueConfig(name string) QueueConfig {
	return QueueConfig{Name: name, MaxRetries: 3, RetryDelay: time.Second, MaxRetryDelay: 5 * time.Minute, LeaseTimeout: 30 * time.Second}
}

func (qc *QueueConfig) normalize() error {
	if err := ValidateQueueName(qc.Name); err != nil {
		return err
	}
	d := DefaultQueueConfig(qc.Name)
	if qc.RetryDelay == 0 {
		qc.RetryDelay = d.RetryDelay
	}
	if qc.MaxRetryDelay == 0 {
		qc.MaxRetryDelay = d.MaxRetryDelay
	}
	if qc.LeaseTimeout == 0 {
		qc.LeaseTimeout = d.LeaseTimeout
	}
	switch {
	case qc.MaxRetries < 0:
		return inputErr(ErrInvalidConfig, "max_retries", "", "%d is negative", qc.MaxRetries)
	case qc.RetryDelay < 0:
		return inputErr(ErrInvalidConfig, "retry_delay", qc.RetryDelay.String(), "is negative")
	case qc.MaxRetryDelay < qc.RetryDelay:
		return inputErr(ErrInvalidConfig, "max_retry_delay", qc.MaxRetryDelay.String(), "is below retry_delay %v", qc.RetryDelay)
	case qc.LeaseTimeout < 100*time.Millisecond:
		return inputErr(ErrInvalidConfig, "lease_timeout", qc.LeaseTimeout.String(), "must be at least 100ms")
	case qc.RetryDelay > 24*time.Hour*24 || qc.MaxRetryDelay > 24*time.Hour*24 || qc.LeaseTimeout > 24*time.Hour*24:
		return inputErr(ErrInvalidConfig, "queue durations", "", "must be under 24 days")
	case qc.Priority < -32768 || qc.Priority > 32767:
		return inputErr(ErrInvalidConfig, "priority", "", "%d is outside [-32768, 32767]", qc.Priority)
	}
	return nil
}

// DeclareQueue creates the queue or updates its settings.
func (c *Client) DeclareQueue(ctx context.Context, qc QueueConfig) error {
	if err := qc.normalize(); err != nil {
		return err
	}
	_, err := c.pool.Exec(ctx, c.q.Get(query.UpsertQueue), qc.Name, qc.MaxRetries,
		qc.RetryDelay.Milliseconds(), qc.MaxRetryDelay.Milliseconds(), qc.LeaseTimeout.Milliseconds(), qc.Priority)
	if err != nil {
		return fmt.Errorf("pgflow: declare queue %s: %w", qc.Name, err)
	}
	c.known.Store(qc.Name, struct{}{})
	return nil
}

// QueueInfo is a queue's definition as stored.
type QueueInfo struct {
	QueueConfig
	Paused    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Queue returns the queue's stored settings, or ErrQueueNotFound.
func (c *Client) Queue(ctx context.Context, name string) (QueueInfo, error) {
	if err := ValidateQueueName(name); err != nil {
		return QueueInfo{}, err
	}
	rows, err := c.pool.Query(ctx, c.q.Get(query.GetQueue), name)
	if err != nil {
		return QueueInfo{}, fmt.Errorf("pgflow: read queue %s: %w", name, err)
	}
	infos, err := pgx.CollectRows(rows, scanQueueInfo)
	if err != nil {
		return QueueInfo{}, fmt.Errorf("pgflow: read queue %s: %w", name, err)
	}
	if len(infos) == 0 {
		return QueueInfo{}, inputErr(ErrQueueNotFound, "queue", name, "does not exist")
	}
	return infos[0], nil
}

func scanQueueInfo(row pgx.CollectableRow) (QueueInfo, error) {
	var qi QueueInfo
	var retry, maxRetry, lease int64
	err := row.Scan(&qi.Name, &qi.MaxRetries, &retry, &maxRetry, &lease, &qi.Priority, &qi.Paused, &qi.CreatedAt, &qi.UpdatedAt)
	qi.RetryDelay = time.Duration(retry) * time.Millisecond
	qi.MaxRetryDelay = time.Duration(maxRetry) * time.Millisecond
	qi.LeaseTimeout = time.Duration(lease) * time.Millisecond
	return qi, err
}

// ensureQueue makes sure the queue exists (creating it unless StrictQueues).
// Known queues cost nothing.
func (c *Client) ensureQueue(ctx context.Context, name string) error {
	if _, ok := c.known.Load(name); ok {
		return nil
	}
	if err := ValidateQueueName(name); err != nil {
		return err
	}
	if c.cfg.StrictQueues {
		if _, err := c.Queue(ctx, name); err != nil {
			return err
		}
	} else if _, err := c.pool.Exec(ctx, c.q.Get(query.EnsureQueue), name); err != nil {
		return fmt.Errorf("pgflow: create queue %s: %w", name, err)
	}
	c.known.Store(name, struct{}{})
	return nil
}

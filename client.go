package pgflow

import (
	"context"
	"errors"
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
	// PollOnly disables LISTEN/NOTIFY: consumers find work by polling
	// alone. Behind a transaction-mode pooler set TransactionPooling
	// instead, which implies it. A started client with consumers still
	// opens one connection of its own, for the session lock that tells
	// others it is alive, unless TransactionPooling.
	PollOnly bool
	// TransactionPooling reports that connections pass through a
	// transaction-mode pooler such as PgBouncer's pool_mode=transaction:
	// sessions are not stable, so pgflow uses no session state. It then
	// runs no LISTEN (consumers poll, every 100 ms unless PollInterval is
	// set; PollOnly is implied), takes no session-level locks or settings,
	// and needs a pool that prepares no named statements: Connect sets
	// pgx's QueryExecModeCacheDescribe (unless the URL chooses a
	// default_query_exec_mode), New refuses a pool in QueryExecModeCacheStatement
	// or QueryExecModeDescribeExec. Connect sets it by itself when the
	// server's backend pid differs from the connection's cancel key, which
	// is the case behind PgBouncer in any pool mode (see DetectPooler).
	// Direct connections keep server-side prepared statements.
	TransactionPooling bool
	// NotifyDebounce is the shortest gap between two NOTIFYs this client
	// sends for Publish calls; publishes in between share one. Default 1 ms.
	NotifyDebounce time.Duration
	// RescueInterval is how often the client looks for expired leases and
	// for consumers that are gone (see "Leases and crashes" in the package
	// documentation). Default 500 ms.
	RescueInterval time.Duration
	// MaintenanceInterval is how often a started client runs the
	// maintenance task (Maintain): expired messages to the DLQ, dead
	// letters past their queue's retention deleted. One client of a schema
	// at a time does the work. Default 5 s: claims skip an expired message
	// until it runs, so the interval only bounds how long one lingers.
	MaintenanceInterval time.Duration
	// DisableMaintenance stops this client from running the maintenance
	// task; other started clients of the schema still do.
	DisableMaintenance bool
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

	maintenanceKey int64 // advisory lock key of the schema's maintenance task

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
	if cfg.TransactionPooling {
		if err := checkPoolingExecMode(pool.Config().ConnConfig.DefaultQueryExecMode); err != nil {
			return nil, err
		}
		cfg.PollOnly = true
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
		cfg.RescueInterval = 500 * time.Millisecond
	}
	if cfg.MaintenanceInterval <= 0 {
		cfg.MaintenanceInterval = 5 * time.Second
	}
	c := &Client{
		pool:    pool,
		q:       q,
		cfg:     cfg,
		log:     cfg.Logger,
		hooks:   append([]EventHook(nil), cfg.Hooks...),
		channel: "pgflow." + cfg.Schema,

		maintenanceKey: maintenanceKeyFor(cfg.Schema),
		consumers:      map[string]*consumer{},
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
// Close closes the pool too. Unless cfg.TransactionPooling is set, it asks
// the server first whether a pooler stands between them (DetectPooler) and
// sets TransactionPooling when one does; OpenPool does the same for a pool
// you tune yourself.
func Connect(ctx context.Context, databaseURL string, cfg Config) (*Client, error) {
	pc, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: database url: %v", ErrInvalidConfig, err)
	}
	pool, err := connectPool(ctx, databaseURL, pc, &cfg)
	if err != nil {
		return nil, err
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

// QueueConfig declares a queue's settings. A field left unset keeps the
// queue's stored value, or takes the default when DeclareQueue creates the
// queue. The defaults are the columns' defaults in pgflow_queues, the same
// for a queue created on first publish, declared in Go or declared by a
// configuration file: max_retries 3, retry_delay 1 s, max_retry_delay 5 min,
// lease_timeout 30 s, priority 0, dlq_retention and expiry 0 (off).
type QueueConfig struct {
	Name string
	// MaxRetries is how many times a failed message is retried before it is
	// dead-lettered: a message is delivered at most MaxRetries+1 times.
	// Set(0) dead-letters a message on its first failure.
	MaxRetries Setting[int]
	// RetryDelay is the first retry's delay; each further retry doubles it
	// (with jitter), up to MaxRetryDelay.
	RetryDelay Setting[time.Duration]
	// MaxRetryDelay caps the backoff; at least RetryDelay.
	MaxRetryDelay Setting[time.Duration]
	// LeaseTimeout is how long a consumer may hold a message without a
	// heartbeat before it is delivered again (SQS's visibility timeout).
	LeaseTimeout Setting[time.Duration]
	// Priority is the default priority of messages published without one.
	Priority Setting[int]
	// DLQRetention is how long the queue's dead letters are kept: a started
	// client's maintenance task deletes older ones (by the time they were
	// dead-lettered), a small batch at a time. Set(0), the default, keeps
	// them until they are purged or redriven.
	DLQRetention Setting[time.Duration]
	// Expiry is how long a message published without its own expiry
	// (WithExpiry, WithExpiresAt) may wait for a consumer once it is
	// visible: one not claimed by then is moved to the DLQ with reason
	// "expired" instead of being delivered late. Set(0), the default: never.
	// A change applies to messages published afterwards.
	Expiry Setting[time.Duration]
}

// maxQueueDuration bounds the queue durations (they are stored as integer
// milliseconds).
const maxQueueDuration = 24 * time.Hour * 24

// maxLifetime bounds DLQRetention and Expiry (bigint milliseconds).
const maxLifetime = 10 * 365 * 24 * time.Hour

// normalize validates the fields that are set.
func (qc *QueueConfig) normalize() error {
	if err := ValidateQueueName(qc.Name); err != nil {
		return err
	}
	checkDuration := func(field string, s Setting[time.Duration], floor time.Duration) error {
		d, ok := s.Get()
		switch {
		case !ok:
			return nil
		case d < 0:
			return inputErr(ErrInvalidConfig, field, d.String(), "is negative")
		case d < floor:
			return inputErr(ErrInvalidConfig, field, d.String(), "must be at least %v", floor)
		case d >= maxQueueDuration:
			return inputErr(ErrInvalidConfig, field, d.String(), "must be under 24 days")
		}
		return nil
	}
	if n, ok := qc.MaxRetries.Get(); ok && n < 0 {
		return inputErr(ErrInvalidConfig, "max_retries", "", "%d is negative", n)
	}
	if err := checkDuration("retry_delay", qc.RetryDelay, 0); err != nil {
		return err
	}
	if err := checkDuration("max_retry_delay", qc.MaxRetryDelay, 0); err != nil {
		return err
	}
	if err := checkDuration("lease_timeout", qc.LeaseTimeout, 100*time.Millisecond); err != nil {
		return err
	}
	if r, ok := qc.RetryDelay.Get(); ok {
		if m, ok := qc.MaxRetryDelay.Get(); ok && m < r {
			return inputErr(ErrInvalidConfig, "max_retry_delay", m.String(), "is below retry_delay %v", r)
		}
	}
	for _, l := range []struct {
		field string
		s     Setting[time.Duration]
	}{{"dlq_retention", qc.DLQRetention}, {"expiry", qc.Expiry}} {
		d, ok := l.s.Get()
		switch {
		case !ok:
		case d < 0:
			return inputErr(ErrInvalidConfig, l.field, d.String(), "is negative (0 turns it off)")
		case d > 0 && d < time.Millisecond:
			return inputErr(ErrInvalidConfig, l.field, d.String(), "must be 0 (off) or at least 1ms")
		case d > maxLifetime:
			return inputErr(ErrInvalidConfig, l.field, d.String(), "must be at most 10 years")
		}
	}
	if p, ok := qc.Priority.Get(); ok && (p < -32768 || p > 32767) {
		return inputErr(ErrInvalidConfig, "priority", "", "%d is outside [-32768, 32767]", p)
	}
	return nil
}

// SettingChange is one queue setting that a declaration changed.
type SettingChange struct {
	Setting string // max_retries, retry_delay, max_retry_delay, lease_timeout, priority, dlq_retention or expiry
	Old     string
	New     string
}

func (sc SettingChange) String() string { return sc.Setting + " " + sc.Old + " -> " + sc.New }

// DeclareQueue creates the queue or updates the settings that qc sets;
// settings left unset keep their stored values (a new queue gets the
// defaults). Changing an existing queue's settings is logged at Warn level,
// old and new value of each, and emitted as an EventQueueChanged event.
func (c *Client) DeclareQueue(ctx context.Context, qc QueueConfig) error {
	if err := qc.normalize(); err != nil {
		return err
	}
	var changes []SettingChange
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, c.q.Get(query.EnsureQueue), qc.Name)
		if err != nil {
			return err
		}
		created := tag.RowsAffected() == 1
		arg := func(s Setting[time.Duration]) any {
			if d, ok := s.Get(); ok {
				return d.Milliseconds()
			}
			return nil
		}
		var maxRetries, priority any
		if n, ok := qc.MaxRetries.Get(); ok {
			maxRetries = n
		}
		if p, ok := qc.Priority.Get(); ok {
			priority = p
		}
		var old, now storedQueue
		err = tx.QueryRow(ctx, c.q.Get(query.UpdateQueue), qc.Name, maxRetries, arg(qc.RetryDelay),
			arg(qc.MaxRetryDelay), arg(qc.LeaseTimeout), priority, arg(qc.DLQRetention), arg(qc.Expiry)).Scan(
			&old.maxRetries, &old.retryMs, &old.maxRetryMs, &old.leaseMs, &old.priority, &old.retentionMs, &old.expiryMs,
			&now.maxRetries, &now.retryMs, &now.maxRetryMs, &now.leaseMs, &now.priority, &now.retentionMs, &now.expiryMs)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // nothing to change
		}
		if err != nil {
			return err
		}
		if now.maxRetryMs < now.retryMs {
			if qc.MaxRetryDelay.IsSet() {
				return inputErr(ErrInvalidConfig, "max_retry_delay", ms(now.maxRetryMs).String(),
					"is below the queue's retry_delay %v", ms(now.retryMs))
			}
			return inputErr(ErrInvalidConfig, "retry_delay", ms(now.retryMs).String(),
				"is above the queue's max_retry_delay %v; set MaxRetryDelay too", ms(now.maxRetryMs))
		}
		if !created {
			changes = old.diff(now)
		}
		return nil
	})
	if err != nil {
		var ie *InputError
		if errors.As(err, &ie) {
			return err
		}
		return fmt.Errorf("pgflow: declare queue %s: %w", qc.Name, err)
	}
	c.known.Store(qc.Name, struct{}{})
	if len(changes) > 0 {
		attrs := []any{"queue", qc.Name}
		for _, ch := range changes {
			attrs = append(attrs, ch.Setting, ch.Old+" -> "+ch.New)
		}
		c.log.Warn("pgflow: queue settings changed", attrs...)
		c.emit(Event{Kind: EventQueueChanged, Queue: qc.Name, Changes: changes})
	}
	return nil
}

// storedQueue is a pgflow_queues row's settings as stored.
type storedQueue struct {
	maxRetries, priority         int
	retryMs, maxRetryMs, leaseMs int64
	retentionMs, expiryMs        int64
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// diff lists the settings that differ from old to now, in QueueConfig order.
func (old storedQueue) diff(now storedQueue) []SettingChange {
	var out []SettingChange
	add := func(name string, a, b any) {
		if a != b {
			out = append(out, SettingChange{Setting: name, Old: fmt.Sprint(a), New: fmt.Sprint(b)})
		}
	}
	add("max_retries", old.maxRetries, now.maxRetries)
	add("retry_delay", ms(old.retryMs), ms(now.retryMs))
	add("max_retry_delay", ms(old.maxRetryMs), ms(now.maxRetryMs))
	add("lease_timeout", ms(old.leaseMs), ms(now.leaseMs))
	add("priority", old.priority, now.priority)
	add("dlq_retention", offDuration(ms(old.retentionMs)), offDuration(ms(now.retentionMs)))
	add("expiry", offDuration(ms(old.expiryMs)), offDuration(ms(now.expiryMs)))
	return out
}

// offDuration shows a lifetime setting, "off" for 0.
func offDuration(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	return d.String()
}

// QueueInfo is a queue's definition as stored.
type QueueInfo struct {
	Name          string
	MaxRetries    int
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	LeaseTimeout  time.Duration
	Priority      int
	// DLQRetention is how long dead letters are kept; 0: until purged.
	DLQRetention time.Duration
	// Expiry is the default expiry of the queue's messages; 0: none.
	Expiry    time.Duration
	Paused    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Queue returns the queue's stored settings, or ErrQueueNotFound.
func (c *Client) Queue(ctx context.Context, name string) (QueueInfo, error) {
	if err := ValidateQueueName(name); err != nil {
		return QueueInfo{}, err
	}
	return c.queueOn(ctx, c.pool, name)
}

// queueOn reads the queue's stored settings on db.
func (c *Client) queueOn(ctx context.Context, db queryer, name string) (QueueInfo, error) {
	rows, err := db.Query(ctx, c.q.Get(query.GetQueue), name)
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
	var retry, maxRetry, lease, retention, expiry int64
	err := row.Scan(&qi.Name, &qi.MaxRetries, &retry, &maxRetry, &lease, &qi.Priority, &qi.Paused, &qi.CreatedAt, &qi.UpdatedAt,
		&retention, &expiry)
	qi.DLQRetention = ms(retention)
	qi.Expiry = ms(expiry)
	qi.RetryDelay = ms(retry)
	qi.MaxRetryDelay = ms(maxRetry)
	qi.LeaseTimeout = ms(lease)
	return qi, err
}

// ensureQueue makes sure the queue exists (creating it unless StrictQueues),
// running its statement on db: the caller's transaction when there is one,
// so that no call ever holds a pooled connection while it waits for another
// from the same pool. Known queues cost nothing. A queue created inside a
// transaction is not remembered as known, since the transaction may still
// roll back; the next publish finds it committed and remembers it then.
func (c *Client) ensureQueue(ctx context.Context, db queryer, name string) error {
	if _, ok := c.known.Load(name); ok {
		return nil
	}
	if err := ValidateQueueName(name); err != nil {
		return err
	}
	if c.cfg.StrictQueues {
		if _, err := c.queueOn(ctx, db, name); err != nil {
			return err
		}
		c.known.Store(name, struct{}{})
		return nil
	}
	rows, err := db.Query(ctx, c.q.Get(query.EnsureQueue), name)
	if err != nil {
		return fmt.Errorf("pgflow: create queue %s: %w", name, err)
	}
	created, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("pgflow: create queue %s: %w", name, err)
	}
	if len(created) == 0 || !isTx(db) {
		c.known.Store(name, struct{}{})
	}
	return nil
}

// isTx reports whether db is a transaction (whose writes may roll back).
func isTx(db queryer) bool {
	_, ok := db.(pgx.Tx)
	return ok
}

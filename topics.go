package pgflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgflow-go/pgflow/internal/query"
)

// Subscription is one queue's subscription to a topic.
type Subscription struct {
	Topic     string
	Queue     string
	CreatedAt time.Time
}

// TopicMessage is the message a topic publish wrote to one subscribed queue.
type TopicMessage struct {
	Queue string
	ID    int64
}

// Subscribe subscribes queue to topic: every later PublishTopic to the
// topic writes a message to the queue. It reports whether the subscription
// is new (subscribing again is a no-op). The queue is created if needed,
// unless Config.StrictQueues asks for DeclareQueue first. Topic names have
// the form of queue names (QueueNamePattern).
func (c *Client) Subscribe(ctx context.Context, topic, queue string) (bool, error) {
	if err := validateTopic(topic); err != nil {
		return false, err
	}
	if err := c.ensureQueue(ctx, c.pool, queue); err != nil {
		return false, err
	}
	var created bool
	if err := c.pool.QueryRow(ctx, c.q.Get(query.Subscribe), topic, queue).Scan(&created); err != nil {
		return false, fmt.Errorf("pgflow: subscribe %s to %s: %w", queue, topic, err)
	}
	return created, nil
}

// Unsubscribe ends queue's subscription to topic and reports whether there
// was one. Messages already published to the queue stay.
func (c *Client) Unsubscribe(ctx context.Context, topic, queue string) (bool, error) {
	if err := validateTopic(topic); err != nil {
		return false, err
	}
	if err := ValidateQueueName(queue); err != nil {
		return false, err
	}
	var existed bool
	if err := c.pool.QueryRow(ctx, c.q.Get(query.Unsubscribe), topic, queue).Scan(&existed); err != nil {
		return false, fmt.Errorf("pgflow: unsubscribe %s from %s: %w", queue, topic, err)
	}
	return existed, nil
}

// Subscriptions lists the subscriptions of topic ("" for every topic), by
// topic then queue.
func (c *Client) Subscriptions(ctx context.Context, topic string) ([]Subscription, error) {
	var t any
	if topic != "" {
		if err := validateTopic(topic); err != nil {
			return nil, err
		}
		t = topic
	}
	rows, err := c.pool.Query(ctx, c.q.Get(query.ListSubscriptions), t)
	if err != nil {
		return nil, fmt.Errorf("pgflow: list subscriptions: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) {
		var s Subscription
		err := r.Scan(&s.Topic, &s.Queue, &s.CreatedAt)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgflow: list subscriptions: %w", err)
	}
	return subs, nil
}

// PublishTopic commits one message to every queue subscribed to topic, all
// in one statement: each subscribed queue gets its own copy (its own id,
// retries and DLQ), or none does. It returns them by queue name. Options
// are Publish's (priority, delay, visible-at, headers, expiry) except
// WithDedupKey, which is per queue and refused here; a topic nobody
// subscribes to returns an error matching ErrNoSubscribers unless
// AllowNoSubscribers is given.
func (c *Client) PublishTopic(ctx context.Context, topic string, payload any, opts ...PublishOption) ([]TopicMessage, error) {
	out, headers, err := c.publishTopic(ctx, c.pool, topic, payload, opts)
	c.afterTopic(topic, out, headers, err)
	for _, m := range out {
		c.wakeLocal(m.Queue)
	}
	return out, err
}

// PublishTopicTx is PublishTopic in the caller's transaction: the messages
// become visible when tx commits and vanish if it rolls back. Consumers are
// notified at commit.
func (c *Client) PublishTopicTx(ctx context.Context, tx pgx.Tx, topic string, payload any, opts ...PublishOption) ([]TopicMessage, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil transaction", ErrInvalidConfig)
	}
	out, headers, err := c.publishTopic(ctx, tx, topic, payload, opts)
	c.afterTopic(topic, out, headers, err)
	return out, err
}

func (c *Client) publishTopic(ctx context.Context, db queryer, topic string, payload any, opts []PublishOption) ([]TopicMessage, map[string]string, error) {
	o, rawHeaders, err := buildOptions(opts)
	if err != nil {
		return nil, nil, err
	}
	if o.dedupKey != nil {
		return nil, nil, inputErr(ErrInvalidOption, "dedup_key", *o.dedupKey, "is per queue; a topic publish cannot take one")
	}
	if err := validateTopic(topic); err != nil {
		return nil, nil, err
	}
	body, err := encodePayload(payload, c.cfg.MaxPayloadBytes)
	if err != nil {
		return nil, nil, err
	}
	var prio, visibleAt any
	if o.priority != nil {
		prio = *o.priority
	}
	if o.visibleAt != nil {
		visibleAt = *o.visibleAt
	}
	var expiryMs, expiresAt any
	if o.expiry > 0 {
		// Whole milliseconds, rounded up: the SQL API's unit.
		expiryMs = (o.expiry + time.Millisecond - 1).Milliseconds()
	}
	if o.expiresAt != nil {
		expiresAt = *o.expiresAt
	}
	rows, err := db.Query(ctx, c.q.Get(query.PublishTopic), topic, string(body), string(rawHeaders), prio,
		o.delay.Milliseconds(), o.allowNoSubscribers, visibleAt, expiryMs, expiresAt)
	if err != nil {
		return nil, nil, topicErr(topic, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TopicMessage, error) {
		var m TopicMessage
		err := r.Scan(&m.Queue, &m.ID)
		return m, err
	})
	if err != nil {
		return nil, nil, topicErr(topic, err)
	}
	return out, o.headers, nil
}

func topicErr(topic string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "PF001" {
		return fmt.Errorf("pgflow: publish to topic %s: %w (subscribe a queue first, or pass AllowNoSubscribers)", topic, ErrNoSubscribers)
	}
	return fmt.Errorf("pgflow: publish to topic %s: %w", topic, err)
}

func (c *Client) afterTopic(topic string, out []TopicMessage, headers map[string]string, err error) {
	if len(c.hooks) == 0 {
		return
	}
	if err != nil {
		c.emit(Event{Kind: EventPublishFailed, Queue: topic, Err: err})
		return
	}
	for _, m := range out {
		c.emit(Event{Kind: EventPublished, Queue: m.Queue, MessageID: m.ID, Headers: headers})
	}
}

// AllowNoSubscribers makes PublishTopic to a topic without subscribers
// succeed, writing nothing, instead of returning ErrNoSubscribers. Publish
// ignores it.
func AllowNoSubscribers() PublishOption {
	return func(o *publishOptions) { o.allowNoSubscribers = true }
}

// validateTopic checks a topic name, which has the form of a queue name.
func validateTopic(topic string) error {
	if !QueueNamePattern.MatchString(topic) {
		return inputErr(ErrInvalidQueueName, "topic", topic,
			"want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or '_'")
	}
	return nil
}

package config

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/producer"
)

// ConsumerConfig turns a consumer entry into the client's consumer settings.
// The queue is declared at Start with the settings the entry sets
// (max_retries, retry_delay_ms, lease_timeout_ms, priority, expiry,
// dlq_retention) and only those:
// a setting the entry leaves out keeps the queue's stored value, and a new
// queue gets the defaults. An entry that sets none does not declare.
func (c Consumer) ConsumerConfig(h pgflow.Handler) pgflow.ConsumerConfig {
	cc := pgflow.ConsumerConfig{Queue: c.QueueName, Workers: c.Workers, Prefetch: c.Prefetch, Handler: h, Timeout: c.Timeout}
	cc.Declare = c.declare()
	return cc
}

// BatchConsumerConfig is ConsumerConfig for an entry with batch_size: h
// receives up to BatchSize messages per call.
func (c Consumer) BatchConsumerConfig(h pgflow.BatchHandler) pgflow.ConsumerConfig {
	cc := pgflow.ConsumerConfig{Queue: c.QueueName, Workers: c.Workers, BatchHandler: h, BatchSize: c.BatchSize, Timeout: c.Timeout}
	cc.Declare = c.declare()
	return cc
}

// declare is the queue declaration of the settings the entry sets, nil
// when it sets none.
func (c Consumer) declare() *pgflow.QueueConfig {
	decl := pgflow.QueueConfig{Name: c.QueueName}
	if c.MaxRetries != nil {
		decl.MaxRetries = pgflow.Set(*c.MaxRetries)
	}
	if c.RetryDelay != nil {
		decl.RetryDelay = pgflow.Set(*c.RetryDelay)
	}
	if c.LeaseTimeout != nil {
		decl.LeaseTimeout = pgflow.Set(*c.LeaseTimeout)
	}
	if c.Priority != nil {
		decl.Priority = pgflow.Set(*c.Priority)
	}
	if c.Expiry != nil {
		decl.Expiry = pgflow.Set(*c.Expiry)
	}
	if c.DLQRetention != nil {
		decl.DLQRetention = pgflow.Set(*c.DLQRetention)
	}
	if decl != (pgflow.QueueConfig{Name: c.QueueName}) {
		return &decl
	}
	return nil
}

// ProducerConfig turns a producer entry into a producer's settings; unset
// max_retries and retry_delay_ms take DefaultMaxRetries and
// DefaultRetryDelayMs.
func (p Producer) ProducerConfig() producer.Config {
	pc := producer.Config{
		Queue:      p.QueueName,
		Workers:    p.Workers,
		MaxRetries: DefaultMaxRetries,
		RetryDelay: DefaultRetryDelayMs * time.Millisecond,
		Priority:   p.Priority,
	}
	if p.MaxRetries != nil {
		pc.MaxRetries = *p.MaxRetries
	}
	if p.RetryDelay != nil {
		pc.RetryDelay = *p.RetryDelay
	}
	return pc
}

// Connect opens a client on the file's database and schema. base supplies
// the other client settings (logger, hooks, …); its Schema is replaced.
func (c *Config) Connect(ctx context.Context, base pgflow.Config) (*pgflow.Client, error) {
	base.Schema = c.Schema
	return pgflow.Connect(ctx, c.DatabaseURL, base)
}

// Service is a client with the file's consumers registered and a producer
// per producer entry.
type Service struct {
	Client    *pgflow.Client
	consumers []Consumer
	producers map[string]*producer.Producer
	list      []*producer.Producer
	started   bool
}

// NewService registers cfg's consumers on client, with the named handlers
// (entries with batch_size: the named batch handlers), and starts a producer
// per producer entry. Start the consumers with Start; Stop stops them and
// closes the producers (the client stays open).
func NewService(client *pgflow.Client, cfg *Config, handlers Handlers, batch ...BatchHandlers) (*Service, error) {
	s := &Service{Client: client, consumers: cfg.Consumers, producers: map[string]*producer.Producer{}}
	bs := BatchHandlers{}
	for _, b := range batch {
		maps.Copy(bs, b)
	}
	var missing []Problem
	for _, c := range cfg.Consumers {
		if msg := handlerProblem(c, handlers, bs); msg != "" {
			missing = append(missing, Problem{Path: "consumers." + c.Name + ".handler", Line: c.Line, Message: msg})
		}
	}
	if len(missing) > 0 {
		return nil, &Error{File: cfg.Path, Problems: missing}
	}
	for _, c := range cfg.Consumers {
		cc := c.ConsumerConfig(handlers[c.Handler])
		if c.BatchSize > 0 {
			cc = c.BatchConsumerConfig(bs[c.Handler])
		}
		if err := client.Consume(cc); err != nil {
			return nil, fmt.Errorf("consumers.%s: %w", c.Name, err)
		}
	}
	for _, p := range cfg.Producers {
		pc := p.ProducerConfig()
		pc.Logger = client.Logger()
		pr, err := producer.New(client, pc)
		if err != nil {
			s.closeProducers(context.Background())
			return nil, fmt.Errorf("producers.%s: %w", p.Name, err)
		}
		s.producers[p.Name] = pr
		if _, taken := s.producers[p.QueueName]; !taken {
			s.producers[p.QueueName] = pr
		}
		s.list = append(s.list, pr)
	}
	return s, nil
}

// Producer returns the producer of an entry, by entry name or queue name, or
// nil.
func (s *Service) Producer(name string) *producer.Producer { return s.producers[name] }

// Start subscribes each consumer's queue to its topics, then starts the
// consumers. Subscriptions stay when the service stops: the queue keeps
// receiving the topics' messages, to be handled at the next start.
func (s *Service) Start(ctx context.Context) error {
	for _, c := range s.consumers {
		for _, topic := range c.Topics {
			if _, err := s.Client.Subscribe(ctx, topic, c.QueueName); err != nil {
				return fmt.Errorf("consumers.%s.topics: %w", c.Name, err)
			}
		}
	}
	if err := s.Client.Start(ctx); err != nil {
		return err
	}
	s.started = true
	return nil
}

// Stop stops the consumers (running handlers finish, and their publishes
// with them), then closes the producers, writing what they hold, all within
// ctx. Stop your own publishing first.
func (s *Service) Stop(ctx context.Context) error {
	var err error
	if s.started {
		s.started = false
		err = s.Client.Stop(ctx)
	}
	return errors.Join(err, s.closeProducers(ctx))
}

func (s *Service) closeProducers(ctx context.Context) error {
	var errs []error
	for _, p := range s.list {
		errs = append(errs, p.Close(ctx))
	}
	return errors.Join(errs...)
}

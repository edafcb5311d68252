package pgflow_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// A topic with three subscribed queues delivers each publish to all three,
// atomically with the publisher's transaction; each copy is a message of
// its own (own id, own retries).
func TestTopicFanOutIsAtomic(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	queues := []string{"audit", "billing", "search"}
	for _, q := range queues {
		created, err := c.Subscribe(ctx, "orders", q)
		if err != nil || !created {
			t.Fatalf("Subscribe(orders, %s) = %v, %v", q, created, err)
		}
	}
	if again, err := c.Subscribe(ctx, "orders", "audit"); err != nil || again {
		t.Fatalf("second Subscribe = %v, %v; want false, nil", again, err)
	}

	// Rolled back: nothing anywhere.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishTopicTx(ctx, tx, "orders", map[string]int{"order": 1}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("%d messages after a rolled-back topic publish", n)
	}

	// Committed: one message per queue, with its headers.
	var got []pgflow.TopicMessage
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var err error
		got, err = c.PublishTopicTx(ctx, tx, "orders", map[string]int{"order": 2}, pgflow.WithHeader("traceparent", "00-t"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("PublishTopicTx = %v, want one message per queue", got)
	}
	for i, m := range got {
		if m.Queue != queues[i] {
			t.Fatalf("PublishTopicTx = %v, want queues %v in order", got, queues)
		}
		msgs := db.Messages(t, m.Queue)
		if len(msgs) != 1 || msgs[0].ID != m.ID || string(msgs[0].Payload) != `{"order": 2}` || msgs[0].Headers["traceparent"] != "00-t" {
			t.Fatalf("queue %s holds %+v, want message %d with its payload and headers", m.Queue, msgs, m.ID)
		}
	}

	// Failing one copy leaves the others alone.
	pool := sqlPool(t, db, 1)
	billing := sqlClaim(t, pool, "billing", 1)
	var outcome string
	if err := pool.QueryRow(ctx, `SELECT pgflow_fail($1::bigint, $2::bigint, 'card declined', permanent => true)`,
		billing[0].ID, billing[0].Token).Scan(&outcome); err != nil || outcome != "dead" {
		t.Fatalf("pgflow_fail = %q, %v", outcome, err)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 2 {
		t.Fatalf("%d live messages after dead-lettering billing's copy, want audit's and search's", n)
	}

	// Unsubscribed queues get nothing more.
	if existed, err := c.Unsubscribe(ctx, "orders", "search"); err != nil || !existed {
		t.Fatalf("Unsubscribe = %v, %v", existed, err)
	}
	got, err = c.PublishTopic(ctx, "orders", map[string]int{"order": 3})
	if err != nil || len(got) != 2 || got[0].Queue != "audit" || got[1].Queue != "billing" {
		t.Fatalf("PublishTopic after unsubscribing search = %v, %v", got, err)
	}
	subs, err := c.Subscriptions(ctx, "orders")
	if err != nil || len(subs) != 2 || subs[0].Queue != "audit" || subs[1].Queue != "billing" || subs[0].Topic != "orders" {
		t.Fatalf("Subscriptions = %+v, %v", subs, err)
	}
}

// Publishing to a topic without subscribers is an error that writes
// nothing, unless AllowNoSubscribers; with it the caller's transaction
// stays usable.
func TestTopicWithoutSubscribers(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	if _, err := c.PublishTopic(ctx, "nobody", "x"); !errors.Is(err, pgflow.ErrNoSubscribers) {
		t.Fatalf("PublishTopic without subscribers = %v, want ErrNoSubscribers", err)
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		got, err := c.PublishTopicTx(ctx, tx, "nobody", "x", pgflow.AllowNoSubscribers())
		if err != nil || len(got) != 0 {
			return fmt.Errorf("PublishTopicTx with AllowNoSubscribers = %v, %v", got, err)
		}
		_, err = c.PublishTx(ctx, tx, "after", "still usable")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 1 {
		t.Fatalf("%d messages, want only the one published after", n)
	}
	for _, bad := range []func() error{
		func() error { _, err := c.PublishTopic(ctx, "bad topic", "x"); return err },
		func() error { _, err := c.Subscribe(ctx, "", "q"); return err },
		func() error { _, err := c.Subscribe(ctx, "t", "bad queue"); return err },
	} {
		if err := bad(); !errors.Is(err, pgflow.ErrInvalidQueueName) {
			t.Errorf("bad name: err %v, want ErrInvalidQueueName", err)
		}
	}
	if _, err := c.PublishTopic(ctx, "t", "x", pgflow.WithDedupKey("k")); !errors.Is(err, pgflow.ErrInvalidOption) {
		t.Errorf("dedup key on a topic: err %v, want ErrInvalidOption", err)
	}
}

// Go consumers of every subscribed queue receive a topic publish, woken by
// its notification.
func TestTopicPublishReachesConsumers(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{PollInterval: time.Hour})
	ctx := context.Background()
	got := make(chan string, 3)
	for _, q := range []string{"a", "b", "c"} {
		if _, err := c.Subscribe(ctx, "news", q); err != nil {
			t.Fatal(err)
		}
		err := c.Consume(pgflow.ConsumerConfig{Queue: q, Handler: func(_ context.Context, m *pgflow.Message) error {
			got <- m.Queue
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishTopic(ctx, "news", "hello"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for range 3 {
		seen = append(seen, await(t, "a topic message", got))
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"a", "b", "c"}) {
		t.Fatalf("delivered to %v", seen)
	}
}

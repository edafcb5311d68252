package pgflow_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// consumeOne starts a consumer on its own pool (like another process) and
// returns a channel of handled message ids and its idle signal (see
// idleSignal).
func consumeOne(t *testing.T, db *pgflowtest.DB, cfg pgflow.Config, queue string) (<-chan int64, <-chan struct{}) {
	t.Helper()
	cfg.Schema, cfg.Logger = db.Schema, quietLogger()
	c, err := pgflow.New(pgflowtest.NewPoolOn(t, db, 4), cfg)
	if err != nil {
		t.Fatal(err)
	}
	idle := idleSignal(c, queue, cfg.PollOnly)
	got := make(chan int64, 16)
	if err := c.Consume(pgflow.ConsumerConfig{Queue: queue, Handler: func(ctx context.Context, m *pgflow.Message) error {
		got <- m.ID
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return got, idle
}

// notifyOnly declares queue on a fresh schema and returns a publishing
// client, the ids handled by a consumer on a pool of its own that polls once
// an hour, and that consumer's idle signal. It returns once the consumer
// listens and sleeps with nothing to do: from then on only a NOTIFY can
// wake it.
func notifyOnly(t *testing.T, queue string) (*pgflow.Client, *pgflowtest.DB, <-chan int64, <-chan struct{}) {
	t.Helper()
	db := pgflowtest.New(t)
	publisher := newClient(t, db, pgflow.Config{})
	if err := publisher.DeclareQueue(context.Background(), pgflow.QueueConfig{Name: queue}); err != nil {
		t.Fatal(err)
	}
	got, idle := consumeOne(t, db, pgflow.Config{PollInterval: time.Hour}, queue)
	await(t, "consumer idle", idle)
	return publisher, db, got, idle
}

// With polling effectively off, only a NOTIFY from the publishing process
// can wake the consumer.
func TestNotifyWakesConsumerInAnotherProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	publisher, db, got, idle := notifyOnly(t, "wake")
	for i := range 3 {
		if i > 0 {
			await(t, "consumer idle", idle)
		}
		id, err := publisher.Publish(ctx, "wake", i)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case h := <-got:
			if h != id {
				t.Fatalf("handled %d, want %d", h, id)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("consumer not woken by NOTIFY")
		}
	}
	// PublishTx notifies at commit.
	await(t, "consumer idle", idle)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := publisher.PublishTx(ctx, tx, "wake", 9)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-got:
		if h != id {
			t.Fatalf("handled %d, want %d", h, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consumer not woken by PublishTx's NOTIFY")
	}
}

// A burst of concurrent publishes, most of them inside one debounce
// interval, then silence: some publishes carry the notification, the others
// rely on one sent after them (notify.Sender.TakeInline). A consumer that
// only NOTIFY can wake must still get every message.
func TestBurstOfPublishesAllReachAConsumerInAnotherProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	publisher, _, got, idle := notifyOnly(t, "burst")
	const goroutines, each = 8, 25
	for round := range 3 {
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if _, err := publisher.Publish(ctx, "burst", []int{round, g, i}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		seen := map[int64]bool{}
		for len(seen) < goroutines*each {
			select {
			case id := <-got:
				seen[id] = true
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: %d of %d messages handled; the rest were never announced", round, len(seen), goroutines*each)
			}
		}
		// Silence, so the next round starts after a quiet spell with the
		// consumer asleep.
		await(t, "consumer idle", idle)
	}
}

// PollOnly sends and listens for no
// notifications and finds work by polling.
func TestPollOnlyMode(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	publisher := newClient(t, db, pgflow.Config{PollOnly: true})
	got, idle := consumeOne(t, db, pgflow.Config{PollOnly: true, PollInterval: 20 * time.Millisecond}, "polled")
	// Asleep after its start-up claim: only a poll can find what follows.
	await(t, "consumer idle", idle)
	id, err := publisher.Publish(ctx, "polled", 1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-got:
		if h != id {
			t.Fatalf("handled %d, want %d", h, id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("poll-only consumer never found the message")
	}
	var listeners int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND query ILIKE '%`+db.Schema+`%'`).Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 0 {
		t.Fatalf("%d LISTEN sessions in poll-only mode", listeners)
	}
}

// A consumer with nothing to do claims again only when something can have
// changed: a wake-up, its poll interval, or the exact moment a delayed
// message becomes visible. Here nothing changes for the empty queue while
// the consumer of another queue waits out a delayed message: the empty
// queue's consumer must not claim meanwhile (a claim answer of "next
// visible in 0" for an empty queue once made it claim every millisecond).
func TestIdleConsumerDoesNotClaimUntilSomethingChanges(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c := newClient(t, db, pgflow.Config{PollOnly: true, PollInterval: time.Hour})
	var mu sync.Mutex
	idles := map[string]int{}
	emptyIdle := make(chan struct{}, 1)
	pgflow.SetTestHooks(c, func(q string, _ bool) {
		mu.Lock()
		idles[q]++
		mu.Unlock()
		if q == "empty" {
			select {
			case emptyIdle <- struct{}{}:
			default:
			}
		}
	}, nil)
	if _, err := c.Publish(ctx, "tick", 1, pgflow.WithDelay(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	ticked := make(chan struct{}, 1)
	for _, q := range []string{"empty", "tick"} {
		if err := c.Consume(pgflow.ConsumerConfig{Queue: q, Handler: func(ctx context.Context, m *pgflow.Message) error {
			ticked <- struct{}{}
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Handled by its exact wake-up, at least 100 ms after the start-up
	// claims: the empty queue's consumer has been asleep all along.
	// On a loaded machine the empty queue's start-up claim may come after
	// the tick: wait for both, then count.
	await(t, "the empty queue's start-up claim", emptyIdle)
	await(t, "the delayed message", ticked)
	mu.Lock()
	defer mu.Unlock()
	if n := idles["empty"]; n != 1 {
		t.Fatalf("the consumer of the empty queue claimed %d times, want once (at start)", n)
	}
}

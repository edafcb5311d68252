package pgflow

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow/internal/completer"
	"github.com/pgflow-go/pgflow/internal/fetcher"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// A claim that carries acknowledgements deletes their messages and claims
// in their place in one transaction: when the claim fails, the
// acknowledgements are not written either.
func TestClaimCarriesAcknowledgementsInItsTransaction(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	ctx := context.Background()
	c, err := New(db.Pool, Config{Schema: db.Schema, PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	for i := range 3 {
		if _, err := c.Publish(ctx, "carry", i); err != nil {
			t.Fatal(err)
		}
	}
	r := &consumerRun{c: c, cfg: ConsumerConfig{Queue: "carry", Workers: 1, MaxBatch: 1}}
	r.settings.lease = 30 * time.Second
	first, _, err := r.claimMessages(ctx, 1, nil)
	if err != nil || len(first) != 1 {
		t.Fatalf("first claim: %d messages, %v", len(first), err)
	}
	acks := []completer.Ack{{ID: first[0].ID, Token: first[0].token}}

	// A claim that fails (a negative LIMIT) after the acknowledgement in
	// the same batch: neither is written.
	if _, _, err := r.claimAndAck(ctx, -1, r.lease(), nil, acks); err == nil || !strings.Contains(err.Error(), "LIMIT") {
		t.Fatalf("a claim of -1 messages: %v, want the claim's LIMIT error", err)
	}
	if n := db.Count(t, "pgflow_messages", "id = $1 AND status = 'processing'", first[0].ID); n != 1 {
		t.Fatalf("after the failed claim, the acknowledged message has %d processing rows, want 1 (not deleted)", n)
	}

	second, res, err := r.claimAndAck(ctx, 1, r.lease(), nil, acks)
	if err != nil || len(second) != 1 || res.Claimed != 1 {
		t.Fatalf("claim with the acknowledgement: %d messages, %+v, %v", len(second), res, err)
	}
	if second[0].ID == first[0].ID {
		t.Fatalf("claimed the acknowledged message %d again", first[0].ID)
	}
	if n := db.Count(t, "pgflow_messages", "id = $1", first[0].ID); n != 0 {
		t.Fatalf("the acknowledged message is still there (%d rows)", n)
	}
	if n := db.Count(t, "pgflow_messages", "status = 'processing'"); n != 1 {
		t.Fatalf("%d messages processing, want 1 (the new delivery only)", n)
	}
}

// claimMessages runs one claim statement without acknowledgements and
// returns the messages in claim order (tests and benchmarks).
func (r *consumerRun) claimMessages(ctx context.Context, n int, after *fetcher.Key) ([]*Message, fetcher.Result, error) {
	return r.claimAndAck(ctx, n, r.lease(), after, nil)
}

package pgflow

// Micro-benchmarks of the hot paths: go test -run '^$' -bench . -benchtime 2000x
// They need the test database (pgflowtest.DatabaseURL). Each reports
// msgs/s besides ns/op, so batch sizes compare directly.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

var benchPayload = json.RawMessage(`{"seq":1,"pad":"` + strings.Repeat("x", 180) + `"}`)

func benchClient(b *testing.B) (*Client, *pgflowtest.DB) {
	b.Helper()
	db := pgflowtest.New(b, pgflowtest.Options{MaxConns: 16})
	c, err := New(db.Pool, Config{Schema: db.Schema, PollOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	if err := c.DeclareQueue(context.Background(), QueueConfig{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	return c, db
}

// benchFill publishes n messages in batches of 1000.
func benchFill(b *testing.B, c *Client, n int) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		msgs := make([]Outgoing, min(1000, n-i))
		for j := range msgs {
			msgs[j] = Outgoing{Queue: "bench", Payload: benchPayload}
		}
		if _, err := c.PublishBatch(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := c.pool.Exec(ctx, "ANALYZE "+c.q.Schema()+".pgflow_messages"); err != nil {
		b.Fatal(err)
	}
}

func benchConsumer(c *Client) *consumerRun {
	r := &consumerRun{c: c, cfg: ConsumerConfig{Queue: "bench", Workers: 100, MaxBatch: 100}}
	r.settings.lease = 30 * time.Second
	return r
}

func msgsPerSec(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPublish: one Publish (one transaction) per op, from 8 goroutines.
func BenchmarkPublish(b *testing.B) {
	c, _ := benchClient(b)
	ctx := context.Background()
	b.SetParallelism(4) // 4 goroutines per GOMAXPROCS (8 on 2 cores)
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Publish(ctx, "bench", benchPayload); err != nil {
				b.Error(err)
				return
			}
			n.Add(1)
		}
	})
	msgsPerSec(b, int(n.Load()))
}

// BenchmarkPublishBatch: one PublishBatch of 1000 messages per op.
func BenchmarkPublishBatch(b *testing.B) {
	c, _ := benchClient(b)
	ctx := context.Background()
	msgs := make([]Outgoing, 1000)
	for i := range msgs {
		msgs[i] = Outgoing{Queue: "bench", Payload: benchPayload}
	}
	b.ResetTimer()
	for range b.N {
		if _, err := c.PublishBatch(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	msgsPerSec(b, b.N*len(msgs))
}

// BenchmarkClaim: one claim statement per op, on a backlog of 100k, 1 or
// 100 messages per claim.
func BenchmarkClaim(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			c, _ := benchClient(b)
			benchFill(b, c, max(100000, b.N*batch))
			cs := benchConsumer(c)
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				msgs, _, err := cs.claimMessages(ctx, batch, nil)
				if err != nil || len(msgs) != batch {
					b.Fatalf("claim: %d messages, %v", len(msgs), err)
				}
			}
			msgsPerSec(b, b.N*batch)
		})
	}
}

// claimAll claims n messages in claims of 100, for the ack/retry benchmarks.
func benchClaimAll(b *testing.B, cs *consumerRun, n int) (ids, tokens []int64) {
	ctx := context.Background()
	for len(ids) < n {
		msgs, _, err := cs.claimMessages(ctx, min(100, n-len(ids)), nil)
		if err != nil || len(msgs) == 0 {
			b.Fatalf("claim: %v", err)
		}
		for _, m := range msgs {
			ids = append(ids, m.ID)
			tokens = append(tokens, m.token)
		}
	}
	return ids, tokens
}

// BenchmarkAck: the ack flusher's statement, 100 acknowledgements per op.
func BenchmarkAck(b *testing.B) {
	const per = 100
	c, _ := benchClient(b)
	benchFill(b, c, b.N*per)
	ids, tokens := benchClaimAll(b, benchConsumer(c), b.N*per)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		var n int
		err := c.pool.QueryRow(ctx, c.q.Get(query.AckMessages), ids[i*per:(i+1)*per], tokens[i*per:(i+1)*per]).Scan(&n)
		if err != nil || n != per {
			b.Fatalf("ack: %v rows, %v", n, err)
		}
	}
	msgsPerSec(b, b.N*per)
}

// BenchmarkRetry: the fail flusher's statement, 100 failures per op (all
// retried, none dead-lettered).
func BenchmarkRetry(b *testing.B) {
	const per = 100
	c, _ := benchClient(b)
	benchFill(b, c, b.N*per)
	ids, tokens := benchClaimAll(b, benchConsumer(c), b.N*per)
	texts, delays, perm := make([]string, per), make([]int64, per), make([]bool, per)
	for i := range texts {
		texts[i], delays[i] = "boom", 60000
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		rows, err := c.pool.Query(ctx, c.q.Get(query.FailMessages), ids[i*per:(i+1)*per], tokens[i*per:(i+1)*per], texts, delays, perm)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if rows.Close(); rows.Err() != nil || n != per {
			b.Fatalf("fail: %d rows, %v", n, rows.Err())
		}
	}
	msgsPerSec(b, b.N*per)
}

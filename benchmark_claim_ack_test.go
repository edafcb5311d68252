package pgflow

import (
	"context"
	"testing"

	"github.com/pgflow-go/pgflow/internal/completer"
	"github.com/pgflow-go/pgflow/internal/query"
)

// BenchmarkClaimAndAck: one claim of 10 on a backlog plus the
// acknowledgement of the previous claim's 10, as a consumer with 10
// workers drains: "separate" is the claim and then the ack statement (two
// round trips, two transactions), "combined" both in one pgx batch (one
// round trip, one transaction), as the consumer does.
func BenchmarkClaimAndAck(b *testing.B) {
	const per = 10
	for _, combined := range []bool{false, true} {
		name := "separate"
		if combined {
			name = "combined"
		}
		b.Run(name, func(b *testing.B) {
			c, _ := benchClient(b)
			benchFill(b, c, max(100000, (b.N+1)*per))
			cs := benchConsumer(c)
			ctx := context.Background()
			var acks []completer.Ack
			ids, tokens := make([]int64, 0, per), make([]int64, 0, per)
			b.ResetTimer()
			for range b.N {
				var msgs []*Message
				var err error
				if combined {
					msgs, _, err = cs.claimAndAck(ctx, per, cs.lease(), nil, acks)
				} else {
					if len(acks) > 0 {
						ids, tokens = ids[:0], tokens[:0]
						for _, a := range acks {
							ids, tokens = append(ids, a.ID), append(tokens, a.Token)
						}
						if _, err := c.pool.Exec(ctx, c.q.Get(query.AckMessages), ids, tokens); err != nil {
							b.Fatal(err)
						}
					}
					msgs, _, err = cs.claimMessages(ctx, per, nil)
				}
				if err != nil || len(msgs) != per {
					b.Fatalf("claim: %d messages, %v", len(msgs), err)
				}
				acks = acks[:0]
				for _, m := range msgs {
					acks = append(acks, completer.Ack{ID: m.ID, Token: m.token})
				}
			}
			msgsPerSec(b, b.N*per)
		})
	}
}

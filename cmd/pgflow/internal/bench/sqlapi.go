package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/schema"
)

// ---------------------------------------------------------------- W1 through the SQL API

// SQL API acknowledgement modes of w1sql.
const (
	// AckEach acknowledges every message with pgflow_ack(id, token), one
	// statement and one synchronous commit each: a client that settles
	// each message as its handler returns.
	AckEach = "each"
	// AckBatch acknowledges a claimed batch with the array form
	// pgflow_ack(ids, tokens): one statement, one synchronous commit.
	AckBatch = "batch"
)

// doW1SQL runs W1's drain three ways back to back for each worker count
// and rep, on the same backlog shape: the Go client (W1 itself), then a
// plain pgx program on the SQL API acknowledging per batch, then one
// acknowledging per message. The summary line gives each drain rate and
// its ratio to the Go client's median.
func (r *Runner) doW1SQL(ctx context.Context) error {
	for _, w := range r.cfg.Workers {
		params := map[string]any{"max_workers": w, "n": r.cfg.N, "batch": r.cfg.Batch}
		var goRuns, batchRuns, eachRuns []map[string]any
		for rep := 1; rep <= r.cfg.Reps; rep++ {
			g, err := r.runW1(ctx, rep, w)
			if err != nil {
				return err
			}
			goRuns = append(goRuns, g)
			b, err := r.runW1SQL(ctx, rep, w, AckBatch)
			if err != nil {
				return err
			}
			batchRuns = append(batchRuns, b)
			e, err := r.runW1SQL(ctx, rep, w, AckEach)
			if err != nil {
				return err
			}
			eachRuns = append(eachRuns, e)
		}
		r.summary("W1", params, goRuns, "drain_msgs_per_s")
		r.summary("W1sql-"+AckBatch, params, batchRuns, "drain_msgs_per_s")
		r.summary("W1sql-"+AckEach, params, eachRuns, "drain_msgs_per_s")
		goMed := median(goRuns, "drain_msgs_per_s")
		ratio := map[string]any{"type": "ratio", "workload": "W1sql", "max_workers": w, "go_drain_msgs_per_s_median": round2(goMed),
			"sql_batch_to_go": round2(median(batchRuns, "drain_msgs_per_s") / goMed),
			"sql_each_to_go":  round2(median(eachRuns, "drain_msgs_per_s") / goMed)}
		r.emit(ratio)
		r.human("W1 drain W=%d: Go client %.0f msg/s; SQL API, ack per batch %.2fx; SQL API, ack per message %.2fx (medians of %d reps)",
			w, goMed, ratio["sql_batch_to_go"], ratio["sql_each_to_go"], r.cfg.Reps)
	}
	return nil
}

func median(runs []map[string]any, field string) float64 {
	var xs []float64
	for _, run := range runs {
		if v, ok := run[field].(float64); ok {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return 0
	}
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if xs[j] < xs[i] {
				xs[i], xs[j] = xs[j], xs[i]
			}
		}
	}
	if len(xs)%2 == 0 {
		return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return xs[len(xs)/2]
}

// runW1SQL enqueues N messages as W1 does, then drains them with a plain
// pgx program on the SQL API: connections each claiming up to their share
// of w messages with pgflow_claim, "handling" them (counting) and
// acknowledging them as ack says, until a claim comes back empty.
func (r *Runner) runW1SQL(ctx context.Context, rep, w int, ack string) (map[string]any, error) {
	if err := r.clean(ctx); err != nil {
		return nil, err
	}
	cons, pub, err := r.clients(ctx, 0, nil)
	if err != nil {
		return nil, err
	}
	defer closeClients(cons, pub)
	t0 := time.Now()
	for i := 0; i < r.cfg.N; i += r.cfg.Batch {
		end := min(i+r.cfg.Batch, r.cfg.N)
		msgs := make([]pgflow.Outgoing, 0, end-i)
		for s := i; s < end; s++ {
			msgs = append(msgs, pgflow.Outgoing{Queue: Queue, Payload: message(int64(s))})
		}
		if _, err := pub.PublishBatch(ctx, msgs); err != nil {
			return nil, err
		}
	}
	enqDur := time.Since(t0)

	s := schema.Quote(r.cfg.Schema)
	claim := `SELECT id, claim_token FROM ` + s + `.pgflow_claim($1::text, $2::integer, $3::integer, $4::text)`
	ackOne := `SELECT ` + s + `.pgflow_ack($1::bigint, $2::bigint)`
	ackMany := `SELECT ` + s + `.pgflow_ack($1::bigint[], $2::bigint[])`
	// Up to w messages held at once, as the Go client's w workers: per
	// batch, one connection per 10 of them, each claiming up to 10 and
	// acknowledging them in one statement; per message, one connection
	// per worker (as many as the pool allows), each acknowledging every
	// message on its own.
	conns := max(1, min(w, r.cfg.Pool-2))
	if ack == AckBatch {
		conns = max(1, min((w+9)/10, r.cfg.Pool-2))
	}
	per := (w + conns - 1) / conns
	var (
		handled atomic.Int64
		wg      sync.WaitGroup
		errMu   sync.Mutex
		first   error
	)
	fail := func(err error) {
		errMu.Lock()
		if first == nil {
			first = err
		}
		errMu.Unlock()
	}
	t1 := time.Now()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consumer := fmt.Sprintf("w1sql-%d", c)
			for ctx.Err() == nil {
				rows, err := r.pool.Query(ctx, claim, Queue, per, 30000, consumer)
				if err != nil {
					fail(err)
					return
				}
				var ids, tokens []int64
				var id, token int64
				_, err = pgx.ForEachRow(rows, []any{&id, &token}, func() error {
					ids, tokens = append(ids, id), append(tokens, token)
					return nil
				})
				if err != nil {
					fail(err)
					return
				}
				if len(ids) == 0 {
					return // the backlog is claimed; the others acknowledge theirs
				}
				handled.Add(int64(len(ids)))
				switch ack {
				case AckBatch:
					var n int
					if err := r.pool.QueryRow(ctx, ackMany, ids, tokens).Scan(&n); err != nil || n != len(ids) {
						fail(fmt.Errorf("ack %d messages: %d acknowledged, %v", len(ids), n, err))
						return
					}
				default:
					for i := range ids {
						var ok bool
						if err := r.pool.QueryRow(ctx, ackOne, ids[i], tokens[i]).Scan(&ok); err != nil || !ok {
							fail(fmt.Errorf("ack %d: %v, %v", ids[i], ok, err))
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	drainDur := time.Since(t1)
	if first != nil {
		return nil, first
	}
	if left, err := r.backlog(ctx); err != nil || left != 0 {
		return nil, errors.Join(err, fmt.Errorf("%d messages left after the SQL API drain", left))
	}
	n := float64(r.cfg.N)
	run := map[string]any{
		"type": "run", "workload": "W1sql-" + ack, "system": "pgflow", "rep": rep, "max_workers": w, "n": r.cfg.N,
		"batch": r.cfg.Batch, "connections": conns, "claim_n": per,
		"enqueue_s":           round2(enqDur.Seconds()),
		"drain_s":             round2(drainDur.Seconds()),
		"drain_msgs_per_s":    round2(n / drainDur.Seconds()),
		"handler_invocations": handled.Load(),
	}
	r.human("W1sql-%s rep=%d W=%d (%d connections claiming up to %d): drain %.2fs = %.0f msg/s",
		ack, rep, w, conns, per, drainDur.Seconds(), n/drainDur.Seconds())
	r.emit(run)
	return run, nil
}

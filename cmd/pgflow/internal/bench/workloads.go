package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow"
)

// ---------------------------------------------------------------- W1 bulk

func (r *Runner) runW1(ctx context.Context, rep, w int) (map[string]any, error) {
	if err := r.clean(ctx); err != nil {
		return nil, err
	}
	rec := newRecorder(0)
	cons, pub, err := r.clients(ctx, w, r.cfg.BatchSize, rec)
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

	t1 := time.Now()
	if err := cons.Start(ctx); err != nil {
		return nil, err
	}
	deadline := t1.Add(60 * time.Minute)
	for rec.handled.Load() < int64(r.cfg.N) {
		if time.Now().After(deadline) {
			return nil, errors.New("drain timed out")
		}
		time.Sleep(time.Millisecond)
	}
	handledDur := time.Since(t1)
	for {
		left, err := r.backlog(ctx)
		if err != nil {
			return nil, err
		}
		if left == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	drainDur := time.Since(t1)

	n := float64(r.cfg.N)
	run := map[string]any{
		"type": "run", "workload": "W1", "system": "pgflow", "rep": rep, "max_workers": w, "n": r.cfg.N, "batch": r.cfg.Batch,
		"batch_size":          r.cfg.BatchSize,
		"prefetch":            r.prefetch(r.cfg.BatchSize),
		"enqueue_s":           round2(enqDur.Seconds()),
		"enqueue_msgs_per_s":  round2(n / enqDur.Seconds()),
		"drain_s":             round2(drainDur.Seconds()),
		"drain_msgs_per_s":    round2(n / drainDur.Seconds()),
		"all_handled_s":       round2(handledDur.Seconds()),
		"handled_msgs_per_s":  round2(n / handledDur.Seconds()),
		"handler_invocations": rec.handled.Load(),
	}
	r.human("W1 rep=%d W=%d: enqueue %d in %.2fs = %.0f msg/s; drain (all acknowledged in DB) %.2fs = %.0f msg/s (all handlers ran at %.2fs)",
		rep, w, r.cfg.N, enqDur.Seconds(), n/enqDur.Seconds(), drainDur.Seconds(), n/drainDur.Seconds(), handledDur.Seconds())
	r.emit(run)
	return run, nil
}

// repeat runs one workload Reps times, then prints its summary line over
// the given fields.
func (r *Runner) repeat(ctx context.Context, workload string, params map[string]any,
	run func(ctx context.Context, rep int) (map[string]any, error), fields ...string) error {
	var runs []map[string]any
	for rep := 1; rep <= r.cfg.Reps; rep++ {
		fig, err := run(ctx, rep)
		if err != nil {
			return err
		}
		runs = append(runs, fig)
	}
	r.summary(workload, params, runs, fields...)
	return nil
}

// prefetch is the consumers' Prefetch: none with a batch handler.
func (r *Runner) prefetch(batchSize int) int {
	if batchSize > 0 {
		return 0
	}
	return r.cfg.Prefetch
}

func (r *Runner) doW1(ctx context.Context) error {
	for _, w := range r.cfg.Workers {
		params := map[string]any{"max_workers": w, "n": r.cfg.N, "batch": r.cfg.Batch, "batch_size": r.cfg.BatchSize, "prefetch": r.prefetch(r.cfg.BatchSize)}
		runW1 := func(ctx context.Context, rep int) (map[string]any, error) { return r.runW1(ctx, rep, w) }
		if err := r.repeat(ctx, "W1", params, runW1,
			"enqueue_msgs_per_s", "drain_msgs_per_s", "drain_s", "handled_msgs_per_s"); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------- W2 single publishes

func (r *Runner) runW2(ctx context.Context, rep int) (map[string]any, error) {
	if err := r.clean(ctx); err != nil {
		return nil, err
	}
	cons, pub, err := r.clients(ctx, 0, 0, nil)
	if err != nil {
		return nil, err
	}
	defer closeClients(cons, pub)
	var (
		stop  atomic.Bool
		count atomic.Int64
		seq   atomic.Int64
		errs  atomic.Int64
		wg    sync.WaitGroup
		lat   = newHist()
	)
	t0 := time.Now()
	for range r.cfg.W2Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b := message(seq.Add(1))
				ts := time.Now()
				if _, err := pub.Publish(ctx, Queue, b); err != nil {
					errs.Add(1)
					continue
				}
				lat.record(time.Since(ts))
				count.Add(1)
			}
		}()
	}
	time.Sleep(r.cfg.W2Dur)
	stop.Store(true)
	wg.Wait()
	el := time.Since(t0)
	n := count.Load()
	run := map[string]any{
		"type": "run", "workload": "W2", "system": "pgflow", "rep": rep, "goroutines": r.cfg.W2Goroutines,
		"duration_s": round2(el.Seconds()), "inserts": n, "errors": errs.Load(),
		"inserts_per_s": round2(float64(n) / el.Seconds()),
		"insert_p50_ms": lat.pct(50),
		"insert_p99_ms": lat.pct(99),
	}
	r.human("W2 rep=%d: %d single-tx Publishes by %d goroutines in %.2fs = %.0f inserts/s (call p50 %.2fms p99 %.2fms, errors %d)",
		rep, n, r.cfg.W2Goroutines, el.Seconds(), float64(n)/el.Seconds(), lat.pct(50), lat.pct(99), errs.Load())
	r.emit(run)
	return run, nil
}

func (r *Runner) doW2(ctx context.Context) error {
	return r.repeat(ctx, "W2", map[string]any{"goroutines": r.cfg.W2Goroutines}, r.runW2,
		"inserts_per_s", "insert_p50_ms", "insert_p99_ms")
}

// ---------------------------------------------------------------- W3 latency

func (r *Runner) runW3(ctx context.Context, rep int) (map[string]any, error) {
	if err := r.clean(ctx); err != nil {
		return nil, err
	}
	total := int(float64(r.cfg.W3Rate) * r.cfg.W3Dur.Seconds())
	rec := newRecorder(total)
	var (
		lats        = newHist()
		maxExclTail atomic.Int64 // max latency over messages sent before the last second
		missingSeq  atomic.Int64
	)
	tailFrom := int64(total - r.cfg.W3Rate)
	cons, pub, err := r.clients(ctx, r.cfg.W3Workers, 0, rec)
	if err != nil {
		return nil, err
	}
	defer closeClients(cons, pub)
	// The handler needs the sequence number to tell tail messages apart.
	var sentAtTail atomic.Int64 // publish time of the first tail message
	sentAtTail.Store(1<<62 - 1)
	rec.onStart = func(start int64, lat time.Duration) {
		if lat < 0 {
			missingSeq.Add(1)
			return
		}
		lats.record(lat)
		if start-int64(lat) < sentAtTail.Load() {
			for {
				m := maxExclTail.Load()
				if int64(lat) <= m || maxExclTail.CompareAndSwap(m, int64(lat)) {
					break
				}
			}
		}
	}
	if err := cons.Start(ctx); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // let the listener settle, as the River harness does

	ch := make(chan int64, total)
	var (
		wg      sync.WaitGroup
		insErrs atomic.Int64
		insLat  = newHist()
	)
	for range r.cfg.W3Inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				b := message(s)
				t := rec.now()
				if s == tailFrom {
					sentAtTail.Store(t)
				}
				rec.sent.set(s, t)
				if _, err := pub.Publish(ctx, Queue, b); err != nil {
					insErrs.Add(1)
					continue
				}
				insLat.record(time.Duration(rec.now() - t))
			}
		}()
	}
	interval := time.Second / time.Duration(r.cfg.W3Rate)
	start := time.Now()
	var maxLag time.Duration
	for i := range total {
		target := start.Add(time.Duration(i) * interval)
		if d := time.Until(target); d > 0 {
			time.Sleep(d)
		} else if -d > maxLag {
			maxLag = -d
		}
		ch <- int64(i)
	}
	close(ch)
	wg.Wait()
	prodDur := time.Since(start)
	deadline := time.Now().Add(30 * time.Second)
	for rec.handled.Load() < int64(total)-insErrs.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	measured := lats.count()
	run := map[string]any{
		"type": "run", "workload": "W3", "system": "pgflow", "rep": rep, "rate_target": r.cfg.W3Rate,
		"duration_s": r.cfg.W3Dur.Seconds(), "max_workers": r.cfg.W3Workers, "prefetch": r.cfg.Prefetch, "inserters": r.cfg.W3Inserters,
		"jobs": total, "measured": measured, "missing": int64(total) - measured, "insert_errors": insErrs.Load(),
		"achieved_rate":       round2(float64(total) / prodDur.Seconds()),
		"max_schedule_lag_ms": msRound(float64(maxLag) / 1e6),
		"p50_ms":              lats.pct(50),
		"p95_ms":              lats.pct(95),
		"p99_ms":              lats.pct(99),
		"max_ms":              lats.pct(100),
		"max_ms_excl_last_1s": msRound(float64(maxExclTail.Load()) / 1e6),
		"mean_ms":             lats.meanMs(),
		"insert_call_p50_ms":  insLat.pct(50),
		"insert_call_p99_ms":  insLat.pct(99),
	}
	r.human("W3 rep=%d: %d messages at %.0f/s; publish->handler-start latency p50 %.2fms p95 %.2fms p99 %.2fms max %.2fms (max excl. last 1s %.2fms; mean %.2fms; publish call p50 %.2fms; missing %d)",
		rep, total, float64(total)/prodDur.Seconds(), lats.pct(50), lats.pct(95), lats.pct(99), lats.pct(100),
		msRound(float64(maxExclTail.Load())/1e6), lats.meanMs(), insLat.pct(50), int64(total)-measured)
	r.emit(run)
	return run, nil
}

func (r *Runner) doW3(ctx context.Context) error {
	return r.repeat(ctx, "W3", map[string]any{"rate": r.cfg.W3Rate, "max_workers": r.cfg.W3Workers, "prefetch": r.cfg.Prefetch}, r.runW3,
		"p50_ms", "p95_ms", "p99_ms", "max_ms", "max_ms_excl_last_1s", "mean_ms", "achieved_rate")
}

// ---------------------------------------------------------------- W4 mixed

func (r *Runner) runW4(ctx context.Context, rep int) (map[string]any, error) {
	if err := r.clean(ctx); err != nil {
		return nil, err
	}
	rec := newRecorder(0)
	cons, pub, err := r.clients(ctx, r.cfg.W4Workers, 0, rec)
	if err != nil {
		return nil, err
	}
	defer closeClients(cons, pub)
	av0, aa0, err := r.autovacCounts(ctx)
	if err != nil {
		return nil, err
	}
	if err := cons.Start(ctx); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second)

	var (
		stop     atomic.Bool
		inserted atomic.Int64
		seq      atomic.Int64
		errs     atomic.Int64
		wg       sync.WaitGroup
	)
	h0 := rec.handled.Load()
	t0 := time.Now()
	for range r.cfg.W4Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, err := pub.Publish(ctx, Queue, message(seq.Add(1))); err != nil {
					errs.Add(1)
					continue
				}
				inserted.Add(1)
			}
		}()
	}
	secs := int(r.cfg.W4Dur / time.Second)
	samples := make([]int64, 0, secs+1)
	for i := 1; i <= secs; i++ {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second)))
		samples = append(samples, rec.handled.Load()-h0)
	}
	stop.Store(true)
	wg.Wait()
	el := time.Since(t0)
	backlog, err := r.backlog(ctx)
	if err != nil {
		return nil, err
	}
	handled := rec.handled.Load() - h0
	ins := inserted.Load()
	completed := ins - backlog // rows leave the table when acknowledged
	closeClients(cons, pub)
	av1, aa1, err := r.autovacCounts(ctx)
	if err != nil {
		return nil, err
	}
	steady := 0.0
	if len(samples) > 5 {
		steady = float64(samples[len(samples)-1]-samples[4]) / float64(len(samples)-5)
	}
	run := map[string]any{
		"type": "run", "workload": "W4", "system": "pgflow", "rep": rep, "producers": r.cfg.W4Producers,
		"max_workers": r.cfg.W4Workers, "duration_s": round2(el.Seconds()), "inserted": ins, "insert_errors": errs.Load(),
		"inserted_per_s":          round2(float64(ins) / el.Seconds()),
		"completed":               completed,
		"completed_per_s":         round2(float64(completed) / el.Seconds()),
		"handled_per_s":           round2(float64(handled) / el.Seconds()),
		"handled_per_s_after_5s":  round2(steady),
		"final_backlog":           backlog,
		"handled_cumulative_by_s": samples,
		"autovacuums_during_run":  av1 - av0,
		"autoanalyzes_during_run": aa1 - aa0,
	}
	r.human("W4 rep=%d: published %d (%.0f/s) by %d producers; acknowledged %d (%.0f/s, steady after 5s %.0f/s) with %d workers; backlog at end %d",
		rep, ins, float64(ins)/el.Seconds(), r.cfg.W4Producers, completed, float64(completed)/el.Seconds(), steady, r.cfg.W4Workers, backlog)
	r.emit(run)
	return run, nil
}

func (r *Runner) doW4(ctx context.Context) error {
	return r.repeat(ctx, "W4", map[string]any{"producers": r.cfg.W4Producers, "max_workers": r.cfg.W4Workers}, r.runW4,
		"inserted_per_s", "completed_per_s", "handled_per_s_after_5s", "final_backlog")
}

// ---------------------------------------------------------------- W5 pinned xmin

func (r *Runner) runW5(ctx context.Context, rep int) (map[string]any, error) {
	if err := r.clean(ctx); err != nil {
		return nil, err
	}
	r.flushBackendStats(ctx)
	secs := int(r.cfg.W5Dur / time.Second)
	third := secs / 3
	total := r.cfg.W5Rate * secs
	rec := newRecorder(total)
	var startNs atomic.Int64
	startNs.Store(1<<62 - 1)
	thirdNs := int64(third) * int64(time.Second)
	lats := [3]*hist{newHist(), newHist(), newHist()}
	rec.onStart = func(start int64, lat time.Duration) {
		if lat < 0 {
			return
		}
		if k := (start - startNs.Load()) / thirdNs; k >= 0 && k < 3 {
			lats[k].record(lat)
		}
	}
	cons, pub, err := r.clients(ctx, r.cfg.W5Workers, 0, rec)
	if err != nil {
		return nil, err
	}
	defer closeClients(cons, pub)
	pinConn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	defer pinConn.Close(context.Background())
	av0, aa0, err := r.autovacCounts(ctx)
	if err != nil {
		return nil, err
	}
	if err := cons.Start(ctx); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second)

	ch := make(chan int64, 4096)
	var (
		wg       sync.WaitGroup
		inserted atomic.Int64
		insErrs  atomic.Int64
		maxLag   atomic.Int64
		insLat   = newHist()
	)
	start := time.Now()
	startNs.Store(int64(start.Sub(rec.base)))
	for range r.cfg.W5Inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				b := message(s)
				t := rec.now()
				rec.sent.set(s, t)
				due := startNs.Load() + (s+1)*int64(time.Second)/int64(r.cfg.W5Rate)
				if lag := t - due; lag > maxLag.Load() {
					maxLag.Store(lag) // racy max: diagnostics only
				}
				if _, err := pub.Publish(ctx, Queue, b); err != nil {
					insErrs.Add(1)
					continue
				}
				insLat.record(time.Duration(rec.now() - t))
				inserted.Add(1)
			}
		}()
	}
	go func() {
		defer close(ch)
		for next := 0; next < total; {
			due := min(total, int(time.Since(start).Seconds()*float64(r.cfg.W5Rate)))
			for ; next < due; next++ {
				ch <- int64(next)
			}
			time.Sleep(time.Millisecond)
		}
	}()

	var (
		pinTx          pgx.Tx
		pinFrom, pinTo time.Duration
	)
	insertedBy := make([]int64, secs+1)
	handledBy := make([]int64, secs+1)
	for i := 1; i <= secs; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second)))
		insertedBy[i], handledBy[i] = inserted.Load(), rec.handled.Load()
		switch i {
		case third:
			if pinTx, err = pinConn.Begin(ctx); err != nil {
				return nil, err
			}
			if _, err = pinTx.Exec(ctx, "SELECT txid_current()"); err != nil {
				return nil, err
			}
			pinFrom = time.Since(start)
		case 2 * third:
			if err := pinTx.Commit(ctx); err != nil {
				return nil, err
			}
			pinTo = time.Since(start)
		}
	}
	wg.Wait()
	el := time.Since(start)
	backlog, err := r.backlog(ctx)
	if err != nil {
		return nil, err
	}
	closeClients(cons, pub)
	_ = pinConn.Close(ctx)
	r.flushBackendStats(ctx)
	var (
		deadTup, liveTup, tableBytes, rows int64
		lastAutovac                        *float64
	)
	if err := r.pool.QueryRow(ctx, `SELECT n_dead_tup, n_live_tup, pg_total_relation_size(relid), (SELECT count(*) FROM `+r.msgs+`),
		extract(epoch FROM last_autovacuum - $1)::float8 FROM pg_stat_user_tables WHERE relid = $2::regclass`, start, r.msgs).
		Scan(&deadTup, &liveTup, &tableBytes, &rows, &lastAutovac); err != nil {
		return nil, err
	}
	av1, aa1, err := r.autovacCounts(ctx)
	if err != nil {
		return nil, err
	}
	ins := inserted.Load()
	run := map[string]any{
		"type": "run", "workload": "W5", "system": "pgflow", "rep": rep, "rate_target": r.cfg.W5Rate,
		"max_workers": r.cfg.W5Workers, "inserters": r.cfg.W5Inserters, "duration_s": round2(el.Seconds()), "jobs": total,
		"inserted": ins, "insert_errors": insErrs.Load(),
		"pin_from_s":               round2(pinFrom.Seconds()),
		"pin_to_s":                 round2(pinTo.Seconds()),
		"max_schedule_lag_ms":      msRound(float64(maxLag.Load()) / 1e6),
		"insert_call_p50_ms":       insLat.pct(50),
		"insert_call_p99_ms":       insLat.pct(99),
		"insert_call_max_ms":       insLat.pct(100),
		"final_backlog":            backlog,
		"n_dead_tup":               deadTup,
		"n_live_tup":               liveTup,
		"rows":                     rows,
		"table_bytes":              tableBytes,
		"inserted_cumulative_by_s": insertedBy[1:],
		"handled_cumulative_by_s":  handledBy[1:],
		"autovacuums_during_run":   av1 - av0,
		"autoanalyzes_during_run":  aa1 - aa0,
	}
	autovacNote := ""
	if av1 > av0 && lastAutovac != nil {
		run["last_autovacuum_at_s"] = round2(*lastAutovac)
		autovacNote = fmt.Sprintf(" (last ended at %.1fs)", *lastAutovac)
	}
	var (
		parts    []string
		handledS [3]float64
	)
	for k := range 3 {
		t := fmt.Sprintf("_t%d", k+1)
		insertedS := float64(insertedBy[(k+1)*third]-insertedBy[k*third]) / float64(third)
		handledS[k] = float64(handledBy[(k+1)*third]-handledBy[k*third]) / float64(third)
		run["inserted_per_s"+t] = round2(insertedS)
		run["handled_per_s"+t] = round2(handledS[k])
		if lats[k].count() > 0 {
			run["pickup_p50_ms"+t] = lats[k].pct(50)
			run["pickup_p99_ms"+t] = lats[k].pct(99)
		}
		parts = append(parts, fmt.Sprintf("%.0f/s in, %.0f/s handled, pickup p50 %.1fms p99 %.1fms",
			insertedS, handledS[k], lats[k].pct(50), lats[k].pct(99)))
	}
	ratio := 0.0
	if handledS[0] > 0 {
		ratio = handledS[1] / handledS[0]
	}
	run["handled_ratio_pinned_vs_first"] = round2(ratio)
	r.human("W5 rep=%d: %d/s target for %ds, %d inserters, %d workers, xmin pinned %.2f-%.2fs; thirds: %s; pinned/first handled %.2f; backlog at end %d; pgflow_messages n_dead_tup %d n_live_tup %d (rows %d), %.1f MB; autovacuums %d%s; max schedule lag %.1fms",
		rep, r.cfg.W5Rate, secs, r.cfg.W5Inserters, r.cfg.W5Workers, pinFrom.Seconds(), pinTo.Seconds(), strings.Join(parts, " | "), ratio,
		backlog, deadTup, liveTup, rows, float64(tableBytes)/(1<<20), av1-av0, autovacNote, float64(maxLag.Load())/1e6)
	r.emit(run)
	return run, nil
}

func (r *Runner) doW5(ctx context.Context) error {
	return r.repeat(ctx, "W5", map[string]any{"rate": r.cfg.W5Rate, "max_workers": r.cfg.W5Workers, "duration_s": r.cfg.W5Dur.Seconds()}, r.runW5,
		"inserted_per_s_t1", "inserted_per_s_t2", "inserted_per_s_t3", "handled_per_s_t1", "handled_per_s_t2", "handled_per_s_t3",
		"handled_ratio_pinned_vs_first", "final_backlog", "n_dead_tup", "n_live_tup", "table_bytes",
		"pickup_p50_ms_t1", "pickup_p99_ms_t1", "pickup_p50_ms_t2", "pickup_p99_ms_t2", "pickup_p50_ms_t3", "pickup_p99_ms_t3",
		"max_schedule_lag_ms", "insert_call_p99_ms", "insert_call_max_ms")
}

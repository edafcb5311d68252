package pgflow

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow/internal/completer"
	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// The conformance suite: every scenario runs twice, once through the Go
// engine (Publish, and the consumer's own claim, acknowledgement, fail,
// extend and release calls with the retry delays its handlers' outcomes
// get) and once through the SQL API with plain queries, as a client in
// another language runs it. Each run writes a trace of what it saw (claims,
// outcomes, retry delays, the queue's and the DLQ's contents); both traces
// must equal the scenario's expected one.

type confSend struct {
	priority *int
	delay    time.Duration
	dedup    string
	headers  map[string]string
}

type confDelivery struct {
	id, token                     int64
	payload                       string
	headers                       map[string]string
	priority, attempt, retryCount int
	lockedUntil                   time.Time
}

// confDriver is one way to use pgflow: the Go engine or the SQL API.
type confDriver interface {
	send(ctx context.Context, queue, payload string, o confSend) (int64, error)
	claim(ctx context.Context, queue string, n int, lease time.Duration) ([]confDelivery, error)
	ack(ctx context.Context, d confDelivery) (bool, error)
	// fail returns "retry", "dead", or "" when the token no longer holds
	// the message; retryAfter < 0 means the queue's backoff.
	fail(ctx context.Context, queue string, d confDelivery, msg string, retryAfter time.Duration, permanent bool) (string, error)
	extend(ctx context.Context, queue string, d confDelivery, lease time.Duration) (bool, error)
	release(ctx context.Context, d confDelivery) (bool, error)
	pause(ctx context.Context, queue string) error
	resume(ctx context.Context, queue string) error
}

// goDriver runs the Go engine's own calls.
type goDriver struct{ c *Client }

func (g goDriver) run(ctx context.Context, queue string, lease time.Duration) (*consumerRun, error) {
	r := &consumerRun{c: g.c, cfg: ConsumerConfig{Queue: queue, Workers: 100, MaxBatch: 100}}
	if err := r.loadSettings(ctx); err != nil {
		return nil, err
	}
	if lease > 0 {
		r.settings.lease = lease
	}
	return r, nil
}

func (g goDriver) send(ctx context.Context, queue, payload string, o confSend) (int64, error) {
	var opts []PublishOption
	if o.priority != nil {
		opts = append(opts, WithPriority(*o.priority))
	}
	if o.delay > 0 {
		opts = append(opts, WithDelay(o.delay))
	}
	if o.dedup != "" {
		opts = append(opts, WithDedupKey(o.dedup))
	}
	if o.headers != nil {
		opts = append(opts, WithHeaders(o.headers))
	}
	return g.c.Publish(ctx, queue, json.RawMessage(payload), opts...)
}

func (g goDriver) claim(ctx context.Context, queue string, n int, lease time.Duration) ([]confDelivery, error) {
	r, err := g.run(ctx, queue, lease)
	if err != nil {
		return nil, err
	}
	msgs, _, err := r.claimMessages(ctx, n, nil)
	var out []confDelivery
	for _, m := range msgs {
		out = append(out, confDelivery{id: m.ID, token: m.token, payload: string(m.Payload), headers: m.Headers,
			priority: m.Priority, attempt: m.Attempt, retryCount: m.RetryCount, lockedUntil: m.LeaseUntil})
	}
	return out, err
}

func (g goDriver) ack(ctx context.Context, d confDelivery) (bool, error) {
	var n int
	err := g.c.pool.QueryRow(ctx, g.c.q.Get(query.AckMessages), []int64{d.id}, []int64{d.token}).Scan(&n)
	return n == 1, err
}

func (g goDriver) fail(ctx context.Context, queue string, d confDelivery, msg string, retryAfter time.Duration, permanent bool) (string, error) {
	r, err := g.run(ctx, queue, 0)
	if err != nil {
		return "", err
	}
	// As consumerRun.finished: RetryAfter's delay, else the queue's backoff.
	delay := retryAfter
	if delay < 0 {
		delay = r.retryPolicy().Delay(d.retryCount + 1)
	}
	res, err := r.writeFails(ctx, []completer.Fail{{ID: d.id, Token: d.token, Text: msg, Permanent: permanent, Delay: delay}})
	switch {
	case err != nil || len(res) == 0:
		return "", err
	case res[0].Dead:
		return "dead", nil
	default:
		return "retry", nil
	}
}

func (g goDriver) extend(ctx context.Context, queue string, d confDelivery, lease time.Duration) (bool, error) {
	r, err := g.run(ctx, queue, lease)
	if err != nil {
		return false, err
	}
	ids, err := r.extend(ctx, []int64{d.id}, []int64{d.token})
	return len(ids) == 1, err
}

func (g goDriver) release(ctx context.Context, d confDelivery) (bool, error) {
	tag, err := g.c.pool.Exec(ctx, g.c.q.Get(query.ReleaseMessages), []int64{d.id}, []int64{d.token})
	return tag.RowsAffected() == 1, err
}

func (g goDriver) pause(ctx context.Context, queue string) error  { return g.c.PauseQueue(ctx, queue) }
func (g goDriver) resume(ctx context.Context, queue string) error { return g.c.ResumeQueue(ctx, queue) }

// sqlDriver runs the SQL API with plain queries on a pool whose
// search_path is the schema, as another language's client would.
type sqlDriver struct{ pool *pgxpool.Pool }

func (s sqlDriver) send(ctx context.Context, queue, payload string, o confSend) (int64, error) {
	var headers, dedup any
	if o.headers != nil {
		b, _ := json.Marshal(o.headers)
		headers = string(b)
	}
	if o.dedup != "" {
		dedup = o.dedup
	}
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT pgflow_send($1, $2::jsonb, coalesce($3::jsonb, '{}'), $4, $5, $6)`,
		queue, payload, headers, o.priority, o.delay.Milliseconds(), dedup).Scan(&id)
	return id, err
}

func (s sqlDriver) claim(ctx context.Context, queue string, n int, lease time.Duration) ([]confDelivery, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, claim_token, payload::text, headers::text, priority, attempt, retry_count, locked_until
		FROM pgflow_claim($1::text, $2::integer, $3::integer, 'conformance')`, queue, n, int32(lease.Milliseconds()))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (confDelivery, error) {
		var d confDelivery
		var headers string
		err := r.Scan(&d.id, &d.token, &d.payload, &headers, &d.priority, &d.attempt, &d.retryCount, &d.lockedUntil)
		if err == nil {
			err = json.Unmarshal([]byte(headers), &d.headers)
		}
		return d, err
	})
}

func (s sqlDriver) ack(ctx context.Context, d confDelivery) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT pgflow_ack($1::bigint, $2::bigint)`, d.id, d.token).Scan(&ok)
	return ok, err
}

func (s sqlDriver) fail(ctx context.Context, _ string, d confDelivery, msg string, retryAfter time.Duration, permanent bool) (string, error) {
	var after any
	if retryAfter >= 0 {
		after = int32(retryAfter.Milliseconds())
	}
	var out *string
	err := s.pool.QueryRow(ctx, `SELECT pgflow_fail($1::bigint, $2::bigint, $3::text, $4::integer, $5::boolean)`, d.id, d.token, msg, after, permanent).Scan(&out)
	if out == nil {
		return "", err
	}
	return *out, err
}

func (s sqlDriver) extend(ctx context.Context, _ string, d confDelivery, lease time.Duration) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT pgflow_extend($1::bigint, $2::bigint, $3::integer)`, d.id, d.token, int32(lease.Milliseconds())).Scan(&ok)
	return ok, err
}

func (s sqlDriver) release(ctx context.Context, d confDelivery) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT pgflow_release($1::bigint, $2::bigint)`, d.id, d.token).Scan(&ok)
	return ok, err
}

func (s sqlDriver) pause(ctx context.Context, queue string) error {
	_, err := s.pool.Exec(ctx, `SELECT pgflow_pause($1)`, queue)
	return err
}

func (s sqlDriver) resume(ctx context.Context, queue string) error {
	_, err := s.pool.Exec(ctx, `SELECT pgflow_resume($1)`, queue)
	return err
}

// confWorld is what a scenario sees besides its driver: the schema's state
// and the passing of time, the same for both drivers.
type confWorld struct {
	t     *testing.T
	db    *pgflowtest.DB
	d     confDriver
	trace []string
}

func (w *confWorld) logf(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf(format, args...))
}

func (w *confWorld) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *confWorld) exec(sql string, args ...any) {
	w.t.Helper()
	w.db.Exec(w.t, sql, args...)
}

// later makes every pending message of queue visible now, as if its delay
// or backoff had passed.
func (w *confWorld) later(queue string) {
	w.exec(`UPDATE pgflow_messages SET visible_at = now() WHERE queue_name = $1 AND status = 'pending'`, queue)
}

func (w *confWorld) send(queue, payload string, o confSend) int64 {
	w.t.Helper()
	id, err := w.d.send(context.Background(), queue, payload, o)
	w.must(err)
	return id
}

// claim claims and traces payload, attempt, retry count and priority.
func (w *confWorld) claim(queue string, n int) []confDelivery {
	w.t.Helper()
	ds, err := w.d.claim(context.Background(), queue, n, 30*time.Second)
	w.must(err)
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s a%d r%d p%d %v", d.payload, d.attempt, d.retryCount, d.priority, d.headers))
	}
	w.logf("claim %d: [%s]", n, strings.Join(parts, ", "))
	return ds
}

// fail fails d and traces the outcome and, for a retry, which backoff
// window its delay fell in.
func (w *confWorld) fail(queue string, d confDelivery, msg string, retryAfter time.Duration, permanent bool) string {
	w.t.Helper()
	out, err := w.d.fail(context.Background(), queue, d, msg, retryAfter, permanent)
	w.must(err)
	line := fmt.Sprintf("fail %s %q: %q", d.payload, msg, out)
	if out == "retry" {
		var ms float64
		w.must(w.db.Pool.QueryRow(context.Background(),
			`SELECT extract(epoch FROM visible_at - now()) * 1000 FROM `+pgx.Identifier{w.db.Schema}.Sanitize()+`.pgflow_messages WHERE id = $1`, d.id).Scan(&ms))
		line += " delay " + confWindow(ms, retryAfter, d.retryCount+1)
	}
	w.logf("%s", line)
	return out
}

// confWindow says whether a retry's delay fell where it should: explicit
// delays as asked, else the backoff window of retry n for queues with a 10 s
// retry delay capped at 25 s (equal jitter: [d/2, d]). The delay is read a
// moment after the fail, so the lower bounds have a second of slack.
func confWindow(ms float64, retryAfter time.Duration, n int) string {
	if retryAfter >= 0 {
		want := float64(retryAfter.Milliseconds())
		if ms >= want-1000 && ms <= want {
			return fmt.Sprintf("as asked (%v)", retryAfter)
		}
		return fmt.Sprintf("%.0f ms, asked %v", ms, retryAfter)
	}
	d := min(10000*float64(int(1)<<(n-1)), 25000)
	if ms >= d/2-1000 && ms <= d {
		return fmt.Sprintf("in [%gs,%gs]", d/2000, d/1000)
	}
	return fmt.Sprintf("%.0f ms, outside [%gs,%gs]", ms, d/2000, d/1000)
}

// state traces queue's live messages and dead letters.
func (w *confWorld) state(queue string) {
	w.t.Helper()
	ctx := context.Background()
	s := pgx.Identifier{w.db.Schema}.Sanitize()
	rows, err := w.db.Pool.Query(ctx, `SELECT payload::text, status, attempt, retry_count,
			(SELECT string_agg(e->>'attempt' || ':' || (e->>'error'), ',') FROM jsonb_array_elements(errors) e)
		FROM `+s+`.pgflow_messages WHERE queue_name = $1 ORDER BY id`, queue)
	w.must(err)
	live, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var p, st string
		var a, rc int
		var errs *string
		err := r.Scan(&p, &st, &a, &rc, &errs)
		return fmt.Sprintf("%s %s a%d r%d errors[%s]", p, st, a, rc, deref(errs)), err
	})
	w.must(err)
	rows, err = w.db.Pool.Query(ctx, `SELECT payload::text, error, attempts, retry_count,
			(SELECT string_agg(e->>'attempt' || ':' || (e->>'error'), ',') FROM jsonb_array_elements(errors) e)
		FROM `+s+`.pgflow_dlq WHERE queue_name = $1 ORDER BY id`, queue)
	w.must(err)
	dead, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var p, e string
		var a, rc int
		var errs *string
		err := r.Scan(&p, &e, &a, &rc, &errs)
		return fmt.Sprintf("%s last %q attempts %d r%d errors[%s]", p, e, a, rc, deref(errs)), err
	})
	w.must(err)
	w.logf("state %s: live %v dlq %v", queue, live, dead)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func prio(p int) *int { return &p }

type confScenario struct {
	name string
	run  func(w *confWorld)
	want []string
}

var confScenarios = []confScenario{
	{
		name: "claim order: priority, then visibility, then id; delayed messages wait",
		run: func(w *confWorld) {
			w.send("order", `{"m": "a"}`, confSend{})
			w.send("order", `{"m": "b"}`, confSend{priority: prio(5)})
			w.send("order", `{"m": "c"}`, confSend{headers: map[string]string{"traceparent": "00-c"}})
			w.send("order", `{"m": "d"}`, confSend{priority: prio(10)})
			w.send("order", `{"m": "e"}`, confSend{delay: time.Hour, priority: prio(20)})
			w.claim("order", 2)
			w.claim("order", 10)
			w.later("order")
			w.claim("order", 10)
		},
		want: []string{
			`claim 2: [{"m": "d"} a1 r0 p10 map[], {"m": "b"} a1 r0 p5 map[]]`,
			`claim 10: [{"m": "a"} a1 r0 p0 map[], {"m": "c"} a1 r0 p0 map[traceparent:00-c]]`,
			`claim 10: [{"m": "e"} a1 r0 p20 map[]]`,
		},
	},
	{
		name: "retries back off by the queue's policy; out of retries, the DLQ keeps every error",
		run: func(w *confWorld) {
			w.send("retry", `{"m": "x"}`, confSend{})
			for i := 1; i <= 4; i++ {
				d := w.claim("retry", 1)[0]
				w.fail("retry", d, fmt.Sprintf("error %d", i), -1, false)
				w.later("retry")
			}
			w.state("retry")
			w.claim("retry", 1)
		},
		want: []string{
			`claim 1: [{"m": "x"} a1 r0 p0 map[]]`,
			`fail {"m": "x"} "error 1": "retry" delay in [5s,10s]`,
			`claim 1: [{"m": "x"} a2 r1 p0 map[]]`,
			`fail {"m": "x"} "error 2": "retry" delay in [10s,20s]`,
			`claim 1: [{"m": "x"} a3 r2 p0 map[]]`,
			`fail {"m": "x"} "error 3": "retry" delay in [12.5s,25s]`,
			`claim 1: [{"m": "x"} a4 r3 p0 map[]]`,
			`fail {"m": "x"} "error 4": "dead"`,
			`state retry: live [] dlq [{"m": "x"} last "error 4" attempts 4 r4 errors[1:error 1,2:error 2,3:error 3,4:error 4]]`,
			`claim 1: []`,
		},
	},
	{
		name: "a permanent failure dead-letters at once; an explicit retry delay wins over the backoff",
		run: func(w *confWorld) {
			w.send("perm", `{"m": "p"}`, confSend{})
			w.send("perm", `{"m": "q"}`, confSend{})
			ds := w.claim("perm", 2)
			w.fail("perm", ds[0], "malformed", -1, true)
			w.fail("perm", ds[1], "try now", 0, false)
			w.claim("perm", 2)
			w.state("perm")
		},
		want: []string{
			`claim 2: [{"m": "p"} a1 r0 p0 map[], {"m": "q"} a1 r0 p0 map[]]`,
			`fail {"m": "p"} "malformed": "dead"`,
			`fail {"m": "q"} "try now": "retry" delay as asked (0s)`,
			`claim 2: [{"m": "q"} a2 r1 p0 map[]]`,
			`state perm: live [{"m": "q"} processing a2 r1 errors[1:try now]] dlq [{"m": "p"} last "malformed" attempts 1 r1 errors[1:malformed]]`,
		},
	},
	{
		name: "extend moves the lease; release hands the message back without a failed attempt",
		run: func(w *confWorld) {
			w.send("lease", `{"m": "l"}`, confSend{})
			d := w.claim("lease", 1)[0]
			ok, err := w.d.extend(context.Background(), "lease", d, time.Hour)
			w.must(err)
			var until time.Time
			w.must(w.db.Pool.QueryRow(context.Background(), `SELECT locked_until FROM `+pgx.Identifier{w.db.Schema}.Sanitize()+
				`.pgflow_messages WHERE id = $1`, d.id).Scan(&until))
			w.logf("extend: %v, lease grew by more than 50 min: %v", ok, until.Sub(d.lockedUntil) > 50*time.Minute)
			ok, err = w.d.release(context.Background(), d)
			w.must(err)
			w.logf("release: %v", ok)
			w.state("lease")
			ok, err = w.d.extend(context.Background(), "lease", d, time.Hour)
			w.must(err)
			w.logf("extend after release: %v", ok)
			w.claim("lease", 1)
		},
		want: []string{
			`claim 1: [{"m": "l"} a1 r0 p0 map[]]`,
			`extend: true, lease grew by more than 50 min: true`,
			`release: true`,
			`state lease: live [{"m": "l"} pending a1 r0 errors[]] dlq []`,
			`extend after release: false`,
			`claim 1: [{"m": "l"} a2 r0 p0 map[]]`,
		},
	},
	{
		name: "a stale token (lease expired and rescued, message claimed again) touches nothing",
		run: func(w *confWorld) {
			w.send("stale", `{"m": "s"}`, confSend{})
			old := w.claim("stale", 1)[0]
			w.exec(`UPDATE pgflow_messages SET locked_until = now() - interval '1 second' WHERE id = $1`, old.id)
			w.exec(`SELECT * FROM pgflow_rescue(100)`)
			cur := w.claim("stale", 1)[0]
			ctx := context.Background()
			ok, err := w.d.ack(ctx, old)
			w.must(err)
			w.logf("stale ack: %v", ok)
			w.fail("stale", old, "stale failure", -1, false)
			ok, err = w.d.extend(ctx, "stale", old, time.Minute)
			w.must(err)
			w.logf("stale extend: %v", ok)
			ok, err = w.d.release(ctx, old)
			w.must(err)
			w.logf("stale release: %v", ok)
			w.state("stale")
			ok, err = w.d.ack(ctx, cur)
			w.must(err)
			w.logf("current ack: %v", ok)
			ok, err = w.d.ack(ctx, cur)
			w.must(err)
			w.logf("second ack: %v", ok)
			w.state("stale")
		},
		want: []string{
			`claim 1: [{"m": "s"} a1 r0 p0 map[]]`,
			`claim 1: [{"m": "s"} a2 r1 p0 map[]]`,
			`stale ack: false`,
			`fail {"m": "s"} "stale failure": ""`,
			`stale extend: false`,
			`stale release: false`,
			`state stale: live [{"m": "s"} processing a2 r1 errors[1:lease expired]] dlq []`,
			`current ack: true`,
			`second ack: false`,
			`state stale: live [] dlq []`,
		},
	},
	{
		name: "dedup: a held key returns the holder's id and writes nothing; acked, the key is free",
		run: func(w *confWorld) {
			first := w.send("dedup", `{"m": 1}`, confSend{dedup: "k"})
			second := w.send("dedup", `{"m": 2}`, confSend{dedup: "k"})
			w.logf("same id: %v", first == second)
			d := w.claim("dedup", 10)[0]
			third := w.send("dedup", `{"m": 3}`, confSend{dedup: "k"})
			w.logf("in flight, same id: %v", third == first)
			ok, err := w.d.ack(context.Background(), d)
			w.must(err)
			w.logf("ack: %v", ok)
			fourth := w.send("dedup", `{"m": 4}`, confSend{dedup: "k"})
			w.logf("after ack, new id: %v", fourth != first)
			w.claim("dedup", 10)
		},
		want: []string{
			`same id: true`,
			`claim 10: [{"m": 1} a1 r0 p0 map[]]`,
			`in flight, same id: true`,
			`ack: true`,
			`after ack, new id: true`,
			`claim 10: [{"m": 4} a1 r0 p0 map[]]`,
		},
	},
	{
		name: "a paused queue gives nothing until resumed; publishing to it still works",
		run: func(w *confWorld) {
			w.send("paused", `{"m": "before"}`, confSend{})
			w.must(w.d.pause(context.Background(), "paused"))
			w.send("paused", `{"m": "during"}`, confSend{})
			w.claim("paused", 10)
			w.must(w.d.resume(context.Background(), "paused"))
			w.claim("paused", 10)
		},
		want: []string{
			`claim 10: []`,
			`claim 10: [{"m": "before"} a1 r0 p0 map[], {"m": "during"} a1 r0 p0 map[]]`,
		},
	},
	{
		name: "a delayed message is invisible until its time",
		run: func(w *confWorld) {
			w.send("delay", `{"m": "later"}`, confSend{delay: time.Hour})
			w.send("delay", `{"m": "now"}`, confSend{})
			w.claim("delay", 10)
			var ms float64
			w.must(w.db.Pool.QueryRow(context.Background(), `SELECT extract(epoch FROM min(visible_at) - now()) * 1000 FROM `+
				pgx.Identifier{w.db.Schema}.Sanitize()+`.pgflow_messages WHERE status = 'pending'`).Scan(&ms))
			w.logf("visible in about an hour: %v", ms > 59*60*1000 && ms <= 60*60*1000)
			w.later("delay")
			w.claim("delay", 10)
		},
		want: []string{
			`claim 10: [{"m": "now"} a1 r0 p0 map[]]`,
			`visible in about an hour: true`,
			`claim 10: [{"m": "later"} a1 r0 p0 map[]]`,
		},
	},
}

func TestConformanceGoEngineAndSQLAPI(t *testing.T) {
	t.Parallel()
	for _, sc := range confScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			traces := map[string][]string{}
			for _, name := range []string{"go", "sql"} {
				db := pgflowtest.New(t, pgflowtest.Options{MaxConns: 2})
				c, err := New(db.Pool, Config{Schema: db.Schema, PollOnly: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Close(context.Background()) })
				// Every queue of the scenarios: 3 retries, backoff 10 s
				// doubling, capped at 25 s.
				for _, q := range []string{"order", "retry", "perm", "lease", "stale", "dedup", "paused", "delay"} {
					err := c.DeclareQueue(context.Background(), QueueConfig{Name: q, MaxRetries: Set(3),
						RetryDelay: Set(10 * time.Second), MaxRetryDelay: Set(25 * time.Second)})
					if err != nil {
						t.Fatal(err)
					}
				}
				var d confDriver = goDriver{c: c}
				if name == "sql" {
					cfg, err := pgxpool.ParseConfig(db.URL)
					if err != nil {
						t.Fatal(err)
					}
					cfg.MaxConns = 1
					cfg.ConnConfig.RuntimeParams["search_path"] = db.Schema
					pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(pool.Close)
					d = sqlDriver{pool: pool}
				}
				w := &confWorld{t: t, db: db, d: d}
				sc.run(w)
				traces[name] = w.trace
			}
			for _, name := range []string{"go", "sql"} {
				got := traces[name]
				// The rescuer's error text names a consumer and a time.
				for i, l := range got {
					if j := strings.Index(l, "1:lease expired"); j >= 0 {
						got[i] = l[:j] + "1:lease expired" + l[strings.Index(l[j:], "]")+j:]
					}
				}
				if !slices.Equal(got, sc.want) {
					t.Errorf("%s trace:\n  %s\nwant:\n  %s", name, strings.Join(got, "\n  "), strings.Join(sc.want, "\n  "))
				}
			}
		})
	}
}

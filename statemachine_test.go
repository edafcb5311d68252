package pgflow_test

// TestStateMachineModel is a model-based test of the message state machine:
// random sequences of operations run against PostgreSQL and, step by step,
// against an in-memory model of what each operation must do; after every
// step the whole database (pgflow_messages and pgflow_dlq) is compared with
// the model.
//
// # The model
//
// A message is in exactly one place: pending (with a logical visible_at),
// processing (with the claim token of its current delivery, its consumer,
// and whether the test forced its lease into the past), dead (one
// pgflow_dlq row) or gone (acknowledged or purged). Per message it keeps
// the attempt column (claims in the current life; a redrive starts a new
// life at 0), retry_count, and the error history.
//
// The operations are the ones the engine performs, through the very
// statements it uses (internal/query, sql/consume.sql: pgflow_claim,
// pgflow_ack, pgflow_fail, pgflow_extend, pgflow_release, pgflow_rescue) on
// the test's own connection, so the test chooses the interleavings, plus the
// client's admin API (Publish, RescueExpired, RedriveDLQ, PurgeDLQ,
// PauseQueue, ResumeQueue, DeclareQueue):
//
//   - publish, with or without priority, delay and dedup key;
//   - claim of 1-4 messages by one of three simulated consumers, from the
//     start or after the consumer's last claimed key (ClaimMessagesAfter);
//   - ack, fail (retry after no delay or a backoff, or permanent), extend and
//     release of 1-3 deliveries the consumer holds: mostly current ones,
//     sometimes stale ones (the lease was taken over, or the message was
//     acknowledged, dead-lettered, redriven or purged since);
//   - lease expiry: an UPDATE puts locked_until in the past, and the rescue
//     (pgflow_rescue or Client.RescueExpired) takes the message back;
//   - stale operations alone: ack/fail/extend/release with a token that is
//     not current, after which the database must be byte for byte unchanged;
//   - redrive by id, by queue or all; purge by id or by queue; pause and
//     resume; a new max_retries for a queue.
//
// # Time
//
// The model's clock is logical: each step is one tick, and the database's
// now() of that step's statements maps to it. A delay (publish or retry) is
// a whole number of hours, H ticks each, H larger than any sequence; a
// "clock" step moves every future visible_at one hour back, in the database
// and in the model alike. Real small delays would make what a claim may take
// depend on the machine's speed; this way the test decides exactly when a
// message becomes visible, and claim order (priority, then visible_at, then
// id) is checked among messages of mixed ages and delays. Leases are long
// (one minute) and only expire when the test says so.
//
// # Rules checked
//
//   - Every message the model knows is in exactly the place it says, with
//     the same queue, priority, dedup key, attempt, retry_count, claim token
//     and error history; no row exists that the model does not know; no id
//     is both live and dead-lettered, nor dead-lettered twice.
//   - A claim returns exactly the messages the model predicts: the first n
//     visible pending messages of the queue in claim order (from the key for
//     ClaimMessagesAfter), none of a paused queue, never one that was
//     acknowledged; each gets a fresh token and attempt + 1.
//   - attempt grows by one per claim and never otherwise (only a redrive
//     resets it, to 0, as documented); the error history only grows.
//   - An operation with a stale token changes nothing.
//   - A failure or expiry with retry_count + 1 > max_retries (read from the
//     queue row at that moment), or a permanent failure, moves the message
//     to the DLQ; otherwise it is pending again.
//   - Error history: one entry per failed delivery. A delivery is one claim;
//     it ends in an ack (the message is gone, so an ack'd delivery never
//     reaches a DLQ row), a release (not a failure: no entry, although
//     attempt counted it), a handler failure (an entry with its error) or a
//     lease expiry (an entry "lease expired: consumer ..."). Outcomes with a
//     stale token end nothing. So a DLQ row's errors holds exactly one entry
//     per claim minus releases over all the message's lives (a redrive keeps
//     the history), in order, each with the attempt number of its delivery
//     in its life; its last entry is the row's error, its attempts the
//     current life's claims, its retry_count the current life's failures.
//
// Default: 200 sequences of 60 steps. PGFLOW_MODEL_STEPS sets the total
// number of steps (sequences of 60); PGFLOW_MODEL_SEED replays a run (with
// PGFLOW_MODEL_SEQUENCE, only the failing sequence). A failure prints the
// seed and the steps of the failing sequence.
//
// Every fourth sequence leaves the DLQ alone until its last step, a
// redrive of the whole DLQ: with max_retries 0 to start with, a single
// dedup key and failures instead of acks, dead-lettered messages pile up
// (several with the same key) for two thirds of the steps, then the queues
// are drained (no more publishes) so that the key is free when the redrive
// comes. A run of the default length fails if it did not reach every kind
// of transition (smMustSee): a test that stopped exercising one would
// prove nothing.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/internal/query"
	"github.com/pgflow-go/pgflow/internal/schema"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

const (
	smSeqLen    = 60
	smHour      = int64(1) << 40 // logical ticks per hour of delay
	smLeaseMS   = 60_000
	smConsumers = 3
)

type smPlace int

const (
	smPending smPlace = iota
	smProcessing
	smDead
	smGone
)

func (p smPlace) String() string {
	return [...]string{"pending", "processing", "dead", "gone"}[p]
}

type smError struct {
	attempt int
	lease   bool   // a lease expiry: text is the prefix of the stored error
	text    string // the handler's error
}

type smMsg struct {
	id       int64
	queue    string
	prio     int16
	dedup    string
	place    smPlace
	vis      int64 // logical visible_at (pending)
	attempt  int
	retry    int
	token    int64 // current delivery's token (processing)
	owner    string
	expired  bool
	errs     []smError
	dlqID    int64 // pgflow_dlq.id (dead), learnt from the database
	tokens   []int64
	redrives int
}

type smQueue struct {
	name       string
	maxRetries int
	prio       int16
	paused     bool
}

type smKey struct {
	prio  int16
	vis   int64     // logical
	visDB time.Time // what the claim returned
	id    int64
}

type smHeld struct {
	id, token int64
}

type smConsumer struct {
	name string
	held []smHeld
	last *smKey
}

type smRun struct {
	t       *testing.T
	ctx     context.Context
	db      *pgflowtest.DB
	c       *pgflow.Client
	q       *query.Set
	seed    uint64
	seq     int
	rng     *rand.Rand
	now     int64 // logical clock
	step    int
	trace   []string
	msgs    map[int64]*smMsg
	queues  []*smQueue
	cons    []*smConsumer
	maxID   int64
	tbl     string // schema-qualified prefix
	errText int
	seen    map[string]int // what the run exercised, by kind
	// burying: this sequence keeps the DLQ for its last third and starts
	// its queues at max_retries 0, so that dead-lettered messages pile up
	// (several with the same dedup key) before they are redriven.
	burying bool
}

func smEnvInt(t *testing.T, name string, def uint64) uint64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}

func TestStateMachineModel(t *testing.T) {
	t.Parallel()
	seed := smEnvInt(t, "PGFLOW_MODEL_SEED", rand.Uint64())
	steps := smEnvInt(t, "PGFLOW_MODEL_STEPS", 200*smSeqLen)
	only := -1
	if os.Getenv("PGFLOW_MODEL_SEQUENCE") != "" {
		only = int(smEnvInt(t, "PGFLOW_MODEL_SEQUENCE", 0))
	}
	sequences := int((steps + smSeqLen - 1) / smSeqLen)
	db := pgflowtest.New(t)
	c := newClient(t, db, pgflow.Config{PollOnly: true})
	ctx := context.Background()
	seen := map[string]int{}
	for i := range sequences {
		if only >= 0 && i != only {
			continue
		}
		r := &smRun{
			t: t, ctx: ctx, db: db, c: c, q: query.MustLoad(db.Schema),
			seed: seed, seq: i, rng: rand.New(rand.NewPCG(seed, uint64(i))),
			now: 1, msgs: map[int64]*smMsg{}, tbl: schema.Quote(db.Schema) + ".", seen: seen, burying: i%4 == 3,
		}
		r.run()
	}
	ran := fmt.Sprintf("%d sequences", sequences)
	if only >= 0 {
		ran = fmt.Sprintf("sequence %d only", only)
	}
	t.Logf("state machine model: seed %d, %s of %d steps; exercised %v", seed, ran, smSeqLen, seen)
	// A run as long as the default one must have reached every transition
	// the rules are about, or it proves nothing.
	if only < 0 && steps >= 200*smSeqLen {
		for _, k := range smMustSee {
			if seen[k] == 0 {
				t.Errorf("the run never exercised %q (seed %d)", k, seed)
			}
		}
	}
}

var smMustSee = []string{
	"publish", "publish dedup hit", "publish delayed", "claim", "claim after key", "claim paused",
	"claim by priority", "ack", "ack stale", "fail retry", "fail delayed", "fail dead", "fail permanent",
	"fail stale", "extend", "extend stale", "release", "release stale", "rescue retry", "rescue dead",
	"rescue via client", "clock", "redrive", "redrive skip dedup_key_live", "redrive skip dedup_key_duplicate",
	"purge", "pause", "resume", "stale unchanged", "dlq after redrive",
}

func (r *smRun) fail(format string, args ...any) {
	r.t.Helper()
	start := max(0, len(r.trace)-smSeqLen)
	r.t.Fatalf("sequence %d, step %d: %s\nreplay: PGFLOW_MODEL_SEED=%d PGFLOW_MODEL_SEQUENCE=%d go test -race -run TestStateMachineModel .\nsteps:\n  %s",
		r.seq, r.step, fmt.Sprintf(format, args...), r.seed, r.seq, strings.Join(r.trace[start:], "\n  "))
}

func (r *smRun) logf(format string, args ...any) {
	r.trace = append(r.trace, fmt.Sprintf("%2d ", r.step)+fmt.Sprintf(format, args...))
}

func (r *smRun) must(err error, what string) {
	r.t.Helper()
	if err != nil {
		r.fail("%s: %v", what, err)
	}
}

func (r *smRun) run() {
	// A clean slate: the rescue is global, so no earlier sequence's row may
	// remain. Queue names are fresh per sequence.
	_, err := r.db.Pool.Exec(r.ctx, "DELETE FROM "+r.tbl+"pgflow_messages; DELETE FROM "+r.tbl+"pgflow_dlq")
	r.must(err, "reset")
	for i := range 2 {
		q := &smQueue{name: fmt.Sprintf("sm%d_%c", r.seq, 'a'+i), maxRetries: r.rng.IntN(3), prio: int16(r.rng.IntN(2) * 2)}
		if r.burying {
			q.maxRetries = 0
		}
		r.must(r.c.DeclareQueue(r.ctx, pgflow.QueueConfig{Name: q.name, MaxRetries: pgflow.Set(q.maxRetries),
			Priority: pgflow.Set(int(q.prio)), LeaseTimeout: pgflow.Set(time.Minute)}), "declare")
		r.logf("declare %s max_retries=%d priority=%d", q.name, q.maxRetries, q.prio)
		r.queues = append(r.queues, q)
	}
	for i := range smConsumers {
		r.cons = append(r.cons, &smConsumer{name: fmt.Sprintf("c%d", i)})
	}
	for r.step = 1; r.step <= smSeqLen; r.step++ {
		r.now++
		r.doStep()
		r.check()
	}
}

func (r *smRun) queue() *smQueue { return r.queues[r.rng.IntN(len(r.queues))] }

func (r *smRun) doStep() {
	switch n := r.rng.IntN(100); {
	case r.burying && r.step == smSeqLen:
		r.redriveWith(pgflow.DLQFilter{All: true}, r.deadMsgs(""), "all")
	case n < 26 && r.burying && r.step >= smSeqLen*2/3:
		r.drain()
	case n < 26:
		r.publish()
	case n < 44:
		r.claim()
	case n < 53 && r.burying && r.step < smSeqLen*2/3:
		r.failOp()
	case n < 53:
		r.ack()
	case n < 62:
		r.failOp()
	case n < 67:
		r.extend()
	case n < 71:
		r.release()
	case n < 77:
		r.expire()
	case n < 81:
		r.clock()
	case n < 88 && r.burying && r.step < smSeqLen*2/3:
		r.publish()
	case n < 88 && r.burying:
		r.drain()
	case n < 86:
		r.redrive()
	case n < 88:
		r.purge()
	case n < 92:
		r.pause()
	case n < 98:
		r.stale()
	default:
		r.redeclare()
	}
}

// ---- operations ----

func (r *smRun) publish() {
	q := r.queue()
	var opts []pgflow.PublishOption
	prio := q.prio
	if r.rng.IntN(2) == 0 {
		prio = int16(r.rng.IntN(3))
		opts = append(opts, pgflow.WithPriority(int(prio)))
	}
	hours := int64(0)
	if r.rng.IntN(4) == 0 {
		hours = int64(1 + r.rng.IntN(2))
		opts = append(opts, pgflow.WithDelay(time.Duration(hours)*time.Hour))
	}
	dedup := ""
	if r.rng.IntN(2) == 0 {
		dedup = fmt.Sprintf("k%d", r.rng.IntN(3)/2)
		if r.burying {
			dedup = "k0"
		}
		opts = append(opts, pgflow.WithDedupKey(dedup))
	}
	id, err := r.c.Publish(r.ctx, q.name, map[string]int{"step": r.step}, opts...)
	r.must(err, "publish")
	r.logf("publish %s prio=%d delay=%dh dedup=%q -> %d", q.name, prio, hours, dedup, id)
	if dedup != "" {
		for _, m := range r.msgs {
			if m.queue == q.name && m.dedup == dedup && (m.place == smPending || m.place == smProcessing) {
				if id != m.id {
					r.fail("publish with dedup key %q returned %d, want the live holder %d", dedup, id, m.id)
				}
				r.seen["publish dedup hit"]++
				return
			}
		}
	}
	if id <= r.maxID {
		r.fail("publish returned id %d, not above the earlier %d (a known id reused?)", id, r.maxID)
	}
	r.maxID = id
	r.seen["publish"]++
	if hours > 0 {
		r.seen["publish delayed"]++
	}
	r.msgs[id] = &smMsg{id: id, queue: q.name, prio: prio, dedup: dedup, place: smPending, vis: r.now + hours*smHour}
}

func (r *smRun) queueByName(name string) *smQueue {
	for _, q := range r.queues {
		if q.name == name {
			return q
		}
	}
	r.fail("unknown queue %s", name)
	return nil
}

// claimOrder sorts by priority descending, then visible_at, then id.
func smCmpKey(a, b smKey) int {
	if a.prio != b.prio {
		return int(b.prio) - int(a.prio)
	}
	if a.vis != b.vis {
		if a.vis < b.vis {
			return -1
		}
		return 1
	}
	switch {
	case a.id < b.id:
		return -1
	case a.id > b.id:
		return 1
	}
	return 0
}

func (m *smMsg) key() smKey { return smKey{prio: m.prio, vis: m.vis, id: m.id} }

func (r *smRun) claim() {
	q := r.queue()
	c := r.cons[r.rng.IntN(len(r.cons))]
	n := 1 + r.rng.IntN(4)
	after := c.last
	if after != nil && r.rng.IntN(2) == 0 {
		after = nil
	}
	// The model's prediction.
	var cand []*smMsg
	var future bool
	for _, m := range r.msgs {
		if m.queue != q.name || m.place != smPending {
			continue
		}
		if m.vis > r.now {
			future = true
			continue
		}
		if after != nil {
			k := m.key()
			if k.prio < after.prio || (k.prio == after.prio && smCmpKey(k, *after) <= 0) {
				continue
			}
		}
		cand = append(cand, m)
	}
	slices.SortFunc(cand, func(a, b *smMsg) int { return smCmpKey(a.key(), b.key()) })
	if q.paused {
		cand = nil
	}
	if len(cand) > n {
		cand = cand[:n]
	}

	var rows pgx.Rows
	var err error
	if after == nil {
		rows, err = r.db.Pool.Query(r.ctx, r.q.Get(query.ClaimMessages), q.name, n, c.name, smLeaseMS)
	} else {
		rows, err = r.db.Pool.Query(r.ctx, r.q.Get(query.ClaimMessagesAfter), q.name, n, c.name, smLeaseMS,
			after.prio, after.visDB, after.id)
	}
	r.must(err, "claim")
	// Closed also when a check fails in the loop: an open result would
	// keep its connection, and the pool's Close at cleanup would wait.
	defer rows.Close()
	type got struct {
		id             *int64
		prio           *int16
		attempt, retry *int
		vis            *time.Time
		token          *int64
		nextIn         *int64
	}
	var res []got
	var trailer []got
	for rows.Next() {
		var g got
		var payload, headers []byte
		var created, locked *time.Time
		r.must(rows.Scan(&g.id, &payload, &headers, &g.prio, &g.attempt, &g.retry, &created, &g.vis, &locked, &g.token, &g.nextIn), "claim scan")
		if g.id == nil {
			trailer = append(trailer, g)
		} else {
			res = append(res, g)
		}
	}
	r.must(rows.Err(), "claim")
	var ids []int64
	for _, g := range res {
		ids = append(ids, *g.id)
	}
	slices.Sort(ids)
	var want []int64
	for _, m := range cand {
		want = append(want, m.id)
	}
	slices.Sort(want)
	afterText := "start"
	if after != nil {
		afterText = fmt.Sprintf("after(%d,%d,%d)", after.prio, after.vis, after.id)
	}
	r.logf("claim %s n=%d by %s from %s paused=%v -> %v", q.name, n, c.name, afterText, q.paused, ids)
	for _, id := range ids {
		if m, ok := r.msgs[id]; ok && m.place == smGone {
			r.fail("claim delivered message %d, which was acknowledged or purged", id)
		}
	}
	if !slices.Equal(ids, want) {
		r.fail("claim of %d from %s (paused %v) returned %v, want %v (claim order: priority, visible_at, id)", n, q.name, q.paused, ids, want)
	}
	switch {
	case q.paused && len(trailer) != 0:
		r.fail("claim of a paused queue returned a next-visible row")
	case !q.paused && len(res) < n && len(trailer) != 1:
		r.fail("claim returned %d of %d and %d next-visible rows, want 1", len(res), n, len(trailer))
	case len(res) == n && len(trailer) != 0:
		r.fail("a full claim returned a next-visible row")
	case len(trailer) == 1 && (trailer[0].nextIn != nil) != future:
		r.fail("claim's next-visible row: next_in_us set = %v, want %v (a delayed message pending)", trailer[0].nextIn != nil, future)
	}
	switch {
	case q.paused:
		r.seen["claim paused"]++
	case len(res) > 0 && after != nil:
		r.seen["claim after key"]++
	case len(res) > 0:
		r.seen["claim"]++
	}
	if len(cand) > 1 && cand[0].prio != cand[len(cand)-1].prio {
		r.seen["claim by priority"]++
	}
	var lastKey *smKey
	for _, g := range res {
		m := r.msgs[*g.id]
		if *g.attempt != m.attempt+1 || *g.retry != m.retry || *g.prio != m.prio {
			r.fail("claim of %d returned attempt %d retry_count %d priority %d, want %d %d %d", m.id, *g.attempt, *g.retry, *g.prio, m.attempt+1, m.retry, m.prio)
		}
		if g.token == nil || slices.Contains(m.tokens, *g.token) {
			r.fail("claim of %d returned token %v, not a fresh one (earlier: %v)", m.id, deref(g.token), m.tokens)
		}
		k := m.key()
		k.visDB = *g.vis
		if lastKey == nil || smCmpKey(k, *lastKey) > 0 {
			lastKey = &k
		}
		m.place, m.attempt, m.token, m.owner, m.expired = smProcessing, m.attempt+1, *g.token, c.name, false
		m.tokens = append(m.tokens, *g.token)
		c.held = append(c.held, smHeld{m.id, *g.token})
	}
	if lastKey != nil {
		c.last = lastKey
	}
	if len(c.held) > 24 {
		c.held = c.held[len(c.held)-24:]
	}
}

// drain acknowledges what a consumer holds and claims more, so that live
// messages, and with them live dedup keys, become fewer.
func (r *smRun) drain() {
	for _, q := range r.queues {
		if q.paused {
			r.pause() // resumes it
			return
		}
	}
	for _, m := range r.msgs {
		if m.place == smPending && m.vis > r.now {
			r.clock()
			return
		}
	}
	c := r.cons[r.rng.IntN(len(r.cons))]
	var hs []smHeld
	for _, h := range c.held {
		if r.current(h) {
			hs = append(hs, h)
		}
	}
	if len(hs) > 0 {
		r.doAck(c, hs)
	}
	r.claim()
}

func (r *smRun) current(h smHeld) bool {
	m := r.msgs[h.id]
	return m != nil && m.place == smProcessing && m.token == h.token
}

// holder is a consumer that holds a current delivery, mostly, or any.
func (r *smRun) holder() *smConsumer {
	var with []*smConsumer
	for _, c := range r.cons {
		if slices.ContainsFunc(c.held, r.current) {
			with = append(with, c)
		}
	}
	if len(with) == 0 || r.rng.IntN(5) == 0 {
		return r.cons[r.rng.IntN(len(r.cons))]
	}
	return with[r.rng.IntN(len(with))]
}

// pickHeld returns 1-3 distinct deliveries consumer c holds: current ones
// mostly, any (stale too) sometimes.
func (r *smRun) pickHeld(c *smConsumer) []smHeld {
	anyOK := r.rng.IntN(5) == 0
	var pool []smHeld
	for _, h := range c.held {
		if anyOK || r.current(h) {
			pool = append(pool, h)
		}
	}
	r.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	return pool[:min(len(pool), 1+r.rng.IntN(3))]
}

func smSplit(hs []smHeld) (ids, tokens []int64) {
	for _, h := range hs {
		ids = append(ids, h.id)
		tokens = append(tokens, h.token)
	}
	return ids, tokens
}

func (r *smRun) ack() {
	c := r.holder()
	hs := r.pickHeld(c)
	if len(hs) == 0 {
		r.logf("ack by %s: nothing held", c.name)
		return
	}
	r.doAck(c, hs)
}

func (r *smRun) doAck(c *smConsumer, hs []smHeld) int {
	ids, tokens := smSplit(hs)
	stmt := query.AckMessages
	var n int
	if len(hs) == 1 && r.rng.IntN(2) == 0 {
		stmt = query.AckMessageTx
		r.must(r.db.Pool.QueryRow(r.ctx, r.q.Get(stmt), ids[0], tokens[0]).Scan(&n), "ack")
	} else {
		r.must(r.db.Pool.QueryRow(r.ctx, r.q.Get(stmt), ids, tokens).Scan(&n), "ack")
	}
	want := 0
	for _, h := range hs {
		if r.current(h) {
			want++
			r.msgs[h.id].place = smGone
			r.seen["ack"]++
		} else {
			r.seen["ack stale"]++
		}
	}
	r.logf("%s by %s %v -> %d", stmt, c.name, hs, n)
	if n != want {
		r.fail("ack of %v deleted %d, want %d (only current tokens)", hs, n, want)
	}
	return n
}

func (r *smRun) failOp() {
	c := r.holder()
	hs := r.pickHeld(c)
	if len(hs) == 0 {
		r.logf("fail by %s: nothing held", c.name)
		return
	}
	r.doFail(c, hs)
}

func (r *smRun) doFail(c *smConsumer, hs []smHeld) int {
	ids, tokens := smSplit(hs)
	var texts []string
	var delays []int64
	var perm []bool
	hours := make([]int64, len(hs))
	for i := range hs {
		r.errText++
		texts = append(texts, fmt.Sprintf("boom %d", r.errText))
		if r.rng.IntN(3) == 0 {
			hours[i] = int64(1 + r.rng.IntN(2))
		}
		delays = append(delays, hours[i]*3_600_000)
		perm = append(perm, r.rng.IntN(4) == 0)
	}
	rows, err := r.db.Pool.Query(r.ctx, r.q.Get(query.FailMessages), ids, tokens, texts, delays, perm)
	r.must(err, "fail")
	defer rows.Close()
	got := map[int64]bool{}
	for rows.Next() {
		var id int64
		var dead bool
		r.must(rows.Scan(&id, &dead), "fail scan")
		if _, dup := got[id]; dup {
			r.fail("fail returned message %d twice", id)
		}
		got[id] = dead
	}
	r.must(rows.Err(), "fail")
	r.logf("fail by %s %v delays=%vh permanent=%v -> %v", c.name, hs, hours, perm, got)
	want := map[int64]bool{}
	for i, h := range hs {
		if !r.current(h) {
			r.seen["fail stale"]++
			continue
		}
		m := r.msgs[h.id]
		q := r.queueByName(m.queue)
		want[m.id] = r.settle(m, smError{attempt: m.attempt, text: texts[i]}, perm[i] || m.retry+1 > q.maxRetries, hours[i])
		switch {
		case perm[i]:
			r.seen["fail permanent"]++
		case want[m.id]:
			r.seen["fail dead"]++
		case hours[i] > 0:
			r.seen["fail delayed"]++
		default:
			r.seen["fail retry"]++
		}
	}
	if !reflect.DeepEqual(got, want) {
		r.fail("fail of %v returned (id: dead) %v, want %v (max_retries, permanent, current tokens only)", hs, got, want)
	}
	return len(got)
}

// settle is pgflow_settle in the model.
func (r *smRun) settle(m *smMsg, e smError, dead bool, hours int64) bool {
	m.errs = append(m.errs, e)
	m.retry++
	m.token, m.owner, m.expired = 0, "", false
	if dead {
		m.place = smDead
		m.dlqID = 0
		return true
	}
	m.place = smPending
	m.vis = r.now + hours*smHour
	return false
}

func (r *smRun) extend() {
	c := r.holder()
	hs := r.pickHeld(c)
	if len(hs) == 0 {
		r.logf("extend by %s: nothing held", c.name)
		return
	}
	r.doIDs(c, hs, query.ExtendLeases)
}

func (r *smRun) release() {
	c := r.holder()
	hs := r.pickHeld(c)
	if len(hs) == 0 {
		r.logf("release by %s: nothing held", c.name)
		return
	}
	r.doIDs(c, hs, query.ReleaseMessages)
}

// doIDs runs extend or release, which return the ids they changed.
func (r *smRun) doIDs(c *smConsumer, hs []smHeld, stmt string) int {
	ids, tokens := smSplit(hs)
	var rows pgx.Rows
	var err error
	if stmt == query.ExtendLeases {
		rows, err = r.db.Pool.Query(r.ctx, r.q.Get(stmt), ids, tokens, smLeaseMS)
	} else {
		rows, err = r.db.Pool.Query(r.ctx, r.q.Get(stmt), ids, tokens)
	}
	r.must(err, stmt)
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	r.must(err, stmt)
	slices.Sort(got)
	var want []int64
	name := map[string]string{query.ExtendLeases: "extend", query.ReleaseMessages: "release"}[stmt]
	for _, h := range hs {
		if !r.current(h) {
			r.seen[name+" stale"]++
			continue
		}
		r.seen[name]++
		want = append(want, h.id)
		m := r.msgs[h.id]
		if stmt == query.ExtendLeases {
			m.expired = false
		} else {
			m.place, m.token, m.owner, m.expired, m.vis = smPending, 0, "", false, r.now
		}
	}
	slices.Sort(want)
	r.logf("%s by %s %v -> %v", stmt, c.name, hs, got)
	if !slices.Equal(got, want) {
		r.fail("%s of %v returned %v, want %v (current tokens only)", stmt, hs, got, want)
	}
	return len(got)
}

// expire forces leases into the past, then (mostly) rescues them.
func (r *smRun) expire() {
	var proc []*smMsg
	for _, m := range r.msgs {
		if m.place == smProcessing && !m.expired {
			proc = append(proc, m)
		}
	}
	slices.SortFunc(proc, func(a, b *smMsg) int { return int(a.id - b.id) })
	r.rng.Shuffle(len(proc), func(i, j int) { proc[i], proc[j] = proc[j], proc[i] })
	proc = proc[:min(len(proc), r.rng.IntN(3))]
	var ids []int64
	for _, m := range proc {
		ids = append(ids, m.id)
		m.expired = true
	}
	if len(ids) > 0 {
		// Distinct times in the past, so the rescue's order is defined.
		_, err := r.db.Pool.Exec(r.ctx, "UPDATE "+r.tbl+`pgflow_messages m
			SET locked_until = now() - interval '1 second' + (a.ord * interval '1 millisecond')
			FROM unnest($1::bigint[]) WITH ORDINALITY AS a(id, ord) WHERE m.id = a.id`, ids)
		r.must(err, "expire")
	}
	r.logf("expire leases %v", ids)
	if r.rng.IntN(4) == 0 {
		return // rescued by a later step, or extended before that
	}
	r.now++ // the rescue is a statement of its own, later than the UPDATE
	var got map[int64]bool
	via := "pgflow_rescue"
	if r.rng.IntN(2) == 0 {
		via = "Client.RescueExpired"
		n, err := r.c.RescueExpired(r.ctx)
		r.must(err, "rescue")
		got = map[int64]bool{}
		for i := 0; i < n; i++ {
			got[int64(-1-i)] = false // placeholder: only the count is known
		}
	} else {
		rows, err := r.db.Pool.Query(r.ctx, r.q.Get(query.RescueExpiredLeases), 1000)
		r.must(err, "rescue")
		defer rows.Close()
		got = map[int64]bool{}
		for rows.Next() {
			var id int64
			var q string
			var attempt int
			var dead bool
			r.must(rows.Scan(&id, &q, &attempt, &dead), "rescue scan")
			got[id] = dead
		}
		r.must(rows.Err(), "rescue")
	}
	want := map[int64]bool{}
	for _, m := range r.msgs {
		if m.place == smProcessing && m.expired {
			q := r.queueByName(m.queue)
			want[m.id] = r.settle(m, smError{attempt: m.attempt, lease: true, text: "lease expired: consumer " + m.owner + " "}, m.retry+1 > q.maxRetries, 0)
			r.seen[map[bool]string{true: "rescue dead", false: "rescue retry"}[want[m.id]]]++
			if via != "pgflow_rescue" {
				r.seen["rescue via client"]++
			}
		}
	}
	r.logf("rescue via %s -> %v", via, got)
	if via == "Client.RescueExpired" {
		if len(got) != len(want) {
			r.fail("RescueExpired took back %d, want %d: %v", len(got), len(want), want)
		}
	} else if !reflect.DeepEqual(got, want) {
		r.fail("rescue returned (id: dead) %v, want %v", got, want)
	}
}

// clock moves every future visible_at one hour back, in both worlds.
func (r *smRun) clock() {
	_, err := r.db.Pool.Exec(r.ctx, "UPDATE "+r.tbl+"pgflow_messages SET visible_at = visible_at - interval '1 hour' WHERE visible_at > now()")
	r.must(err, "clock")
	r.seen["clock"]++
	for _, m := range r.msgs {
		if m.place == smPending && m.vis > r.now {
			m.vis -= smHour
		}
	}
	// Remembered claim keys are points in time: they stay.
	r.logf("clock: one hour on")
}

func (r *smRun) deadMsgs(queue string) []*smMsg {
	var out []*smMsg
	for _, m := range r.msgs {
		if m.place == smDead && (queue == "" || m.queue == queue) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *smMsg) int { return int(a.dlqID - b.dlqID) })
	return out
}

// dlqSelect picks a filter and the model's rows it selects.
func (r *smRun) dlqSelect() (pgflow.DLQFilter, []*smMsg, string) {
	switch r.rng.IntN(5) {
	case 0, 1:
		dead := r.deadMsgs("")
		r.rng.Shuffle(len(dead), func(i, j int) { dead[i], dead[j] = dead[j], dead[i] })
		dead = dead[:min(len(dead), 1+r.rng.IntN(2))]
		var ids []int64
		for _, m := range dead {
			ids = append(ids, m.dlqID)
		}
		ids = append(ids, 1<<50) // one that does not exist
		slices.SortFunc(dead, func(a, b *smMsg) int { return int(a.dlqID - b.dlqID) })
		return pgflow.DLQFilter{IDs: ids}, dead, fmt.Sprintf("ids %v", ids)
	case 2, 3:
		q := r.queue()
		return pgflow.DLQFilter{Queue: q.name}, r.deadMsgs(q.name), "queue " + q.name
	default:
		return pgflow.DLQFilter{All: true}, r.deadMsgs(""), "all"
	}
}

func (r *smRun) redrive() {
	f, sel, what := r.dlqSelect()
	r.redriveWith(f, sel, what)
}

func (r *smRun) redriveWith(f pgflow.DLQFilter, sel []*smMsg, what string) {
	res, err := r.c.RedriveDLQ(r.ctx, f, pgflow.RedriveOptions{})
	r.must(err, "redrive")
	// The model: rows in DLQ id order; a live dedup key (before the
	// statement) or an older selected row with the same key keeps a row
	// in the DLQ.
	live := map[string]bool{}
	for _, m := range r.msgs {
		if (m.place == smPending || m.place == smProcessing) && m.dedup != "" {
			live[m.queue+"\x00"+m.dedup] = true
		}
	}
	seen := map[string]bool{}
	wantSkips := map[int64]string{}
	moved := 0
	for _, m := range sel {
		k := m.queue + "\x00" + m.dedup
		switch {
		case m.dedup != "" && live[k]:
			wantSkips[m.dlqID] = "dedup_key_live"
			r.seen["redrive skip dedup_key_live"]++
		case m.dedup != "" && seen[k]:
			wantSkips[m.dlqID] = "dedup_key_duplicate"
			r.seen["redrive skip dedup_key_duplicate"]++
		default:
			r.seen["redrive"]++
			moved++
			m.place, m.vis, m.retry, m.attempt, m.dlqID = smPending, r.now, 0, 0, 0
			m.redrives++
		}
		if m.dedup != "" {
			seen[k] = true
		}
	}
	gotSkips := map[int64]string{}
	for _, s := range res.Skipped {
		gotSkips[s.ID] = s.Reason
	}
	r.logf("redrive %s -> redriven %d skipped %v", what, res.Redriven, gotSkips)
	if res.Redriven != moved || !reflect.DeepEqual(gotSkips, wantSkips) {
		r.fail("redrive %s: redriven %d skipped %v, want %d and %v", what, res.Redriven, gotSkips, moved, wantSkips)
	}
}

func (r *smRun) purge() {
	f, sel, what := r.dlqSelect()
	res, err := r.c.PurgeDLQ(r.ctx, f)
	r.must(err, "purge")
	for _, m := range sel {
		m.place = smGone
		r.seen["purge"]++
	}
	r.logf("purge %s -> %d", what, res.Purged)
	if res.Purged != len(sel) {
		r.fail("purge %s removed %d, want %d", what, res.Purged, len(sel))
	}
}

func (r *smRun) pause() {
	// Resume a paused queue if there is one, else pause one every other
	// time: most claims meet a running queue.
	q := r.queue()
	for _, p := range r.queues {
		if p.paused {
			q = p
		}
	}
	if !q.paused && r.rng.IntN(2) == 0 {
		r.logf("pause: not this time")
		return
	}
	if q.paused {
		r.must(r.c.ResumeQueue(r.ctx, q.name), "resume")
	} else {
		r.must(r.c.PauseQueue(r.ctx, q.name), "pause")
	}
	q.paused = !q.paused
	r.seen[map[bool]string{true: "pause", false: "resume"}[q.paused]]++
	r.logf("paused %s = %v", q.name, q.paused)
}

func (r *smRun) redeclare() {
	q := r.queue()
	q.maxRetries = r.rng.IntN(4)
	r.must(r.c.DeclareQueue(r.ctx, pgflow.QueueConfig{Name: q.name, MaxRetries: pgflow.Set(q.maxRetries)}), "declare")
	r.logf("declare %s max_retries=%d", q.name, q.maxRetries)
}

// stale runs one operation with a token that is not current and checks
// that the database is exactly as before.
func (r *smRun) stale() {
	var old []smHeld
	for _, m := range r.msgs {
		for _, tok := range m.tokens {
			if m.place != smProcessing || tok != m.token {
				old = append(old, smHeld{m.id, tok})
			}
		}
	}
	if len(old) == 0 {
		r.logf("stale: no old token yet")
		return
	}
	slices.SortFunc(old, func(a, b smHeld) int { return int(a.token - b.token) })
	h := old[r.rng.IntN(len(old))]
	c := r.cons[r.rng.IntN(len(r.cons))]
	before := r.snapshot()
	var n int
	switch r.rng.IntN(4) {
	case 0:
		n = r.doAck(c, []smHeld{h})
	case 1:
		n = r.doFail(c, []smHeld{h})
	case 2:
		n = r.doIDs(c, []smHeld{h}, query.ExtendLeases)
	default:
		n = r.doIDs(c, []smHeld{h}, query.ReleaseMessages)
	}
	if n != 0 {
		r.fail("an operation with stale token %v changed %d messages", h, n)
	}
	if after := r.snapshot(); after != before {
		r.fail("an operation with stale token %v changed the database:\nbefore %s\nafter  %s", h, before, after)
	}
	r.seen["stale unchanged"]++
}

// snapshot is every row of both tables as text.
func (r *smRun) snapshot() string {
	var s string
	err := r.db.Pool.QueryRow(r.ctx, `SELECT coalesce((SELECT string_agg(m::text, E'\n' ORDER BY m.id) FROM `+r.tbl+`pgflow_messages m), '') || E'\n--\n' ||
		coalesce((SELECT string_agg(d::text, E'\n' ORDER BY d.id) FROM `+r.tbl+`pgflow_dlq d), '')`).Scan(&s)
	r.must(err, "snapshot")
	return s
}

// ---- the check after every step ----

type smErrJSON struct {
	Attempt int    `json:"attempt"`
	Error   string `json:"error"`
	At      string `json:"at"`
}

func (r *smRun) checkErrors(m *smMsg, raw []byte, where string) {
	var got []smErrJSON
	if err := json.Unmarshal(raw, &got); err != nil {
		r.fail("message %d (%s): errors %s: %v", m.id, where, raw, err)
	}
	if len(got) != len(m.errs) {
		r.fail("message %d (%s): %d error entries, want %d, one per failed delivery (claims minus releases over %d lives): %s",
			m.id, where, len(got), len(m.errs), m.redrives+1, raw)
	}
	for i, e := range m.errs {
		ok := got[i].Attempt == e.attempt && got[i].At != ""
		if e.lease {
			ok = ok && strings.HasPrefix(got[i].Error, e.text)
		} else {
			ok = ok && got[i].Error == e.text
		}
		if !ok {
			r.fail("message %d (%s): error entry %d is %+v, want attempt %d error %q (lease expiry: %v)", m.id, where, i, got[i], e.attempt, e.text, e.lease)
		}
	}
}

func (r *smRun) check() {
	seen := map[int64]string{}
	rows, err := r.db.Pool.Query(r.ctx, `SELECT id, queue_name, status, priority, attempt, retry_count, coalesce(dedup_key, ''),
		claim_token, coalesce(locked_by, ''), coalesce(locked_until < now(), false), visible_at <= now(), errors
		FROM `+r.tbl+`pgflow_messages`)
	r.must(err, "check messages")
	defer rows.Close()
	for rows.Next() {
		var (
			id                   int64
			queue, status, dedup string
			prio                 int16
			attempt, retry       int
			token                *int64
			owner                string
			expired, visible     bool
			errs                 []byte
		)
		r.must(rows.Scan(&id, &queue, &status, &prio, &attempt, &retry, &dedup, &token, &owner, &expired, &visible, &errs), "check scan")
		if seen[id] != "" {
			r.fail("message %d is twice in pgflow_messages", id)
		}
		seen[id] = "live"
		m := r.msgs[id]
		if m == nil {
			r.fail("pgflow_messages holds %d (%s, %s), which the model does not know", id, queue, status)
		}
		if m.place != smPending && m.place != smProcessing {
			r.fail("message %d is %s in pgflow_messages, but the model has it %s", id, status, m.place)
		}
		if status != m.place.String() || queue != m.queue || prio != m.prio || dedup != m.dedup {
			r.fail("message %d is (%s %s prio %d dedup %q), want (%s %s prio %d dedup %q)", id, status, queue, prio, dedup, m.place, m.queue, m.prio, m.dedup)
		}
		if attempt != m.attempt || retry != m.retry {
			r.fail("message %d has attempt %d retry_count %d, want %d %d (attempt grows only by claims)", id, attempt, retry, m.attempt, m.retry)
		}
		switch m.place {
		case smProcessing:
			if token == nil || *token != m.token || owner != m.owner || expired != m.expired {
				r.fail("message %d: token %v locked_by %q expired %v, want %d %q %v", id, deref(token), owner, expired, m.token, m.owner, m.expired)
			}
		case smPending:
			if token != nil || owner != "" {
				r.fail("pending message %d keeps token %v locked_by %q", id, deref(token), owner)
			}
			if visible != (m.vis <= r.now) {
				r.fail("message %d visible %v, want %v", id, visible, m.vis <= r.now)
			}
		}
		r.checkErrors(m, errs, "live")
	}
	r.must(rows.Err(), "check messages")

	rows, err = r.db.Pool.Query(r.ctx, `SELECT id, message_id, queue_name, priority, coalesce(dedup_key, ''), error, errors, retry_count, attempts
		FROM `+r.tbl+`pgflow_dlq`)
	r.must(err, "check dlq")
	defer rows.Close()
	for rows.Next() {
		var (
			dlqID, id          int64
			queue, dedup, last string
			prio               int16
			errs               []byte
			retry, attempts    int
		)
		r.must(rows.Scan(&dlqID, &id, &queue, &prio, &dedup, &last, &errs, &retry, &attempts), "check dlq scan")
		switch seen[id] {
		case "live":
			r.fail("message %d is both live and in the DLQ (row %d)", id, dlqID)
		case "dead":
			r.fail("message %d has two DLQ rows", id)
		}
		seen[id] = "dead"
		m := r.msgs[id]
		if m == nil || m.place != smDead {
			place := "unknown"
			if m != nil {
				place = m.place.String()
			}
			r.fail("DLQ row %d holds message %d, which the model has %s", dlqID, id, place)
		}
		if m.dlqID == 0 {
			m.dlqID = dlqID
		}
		if m.dlqID != dlqID || queue != m.queue || prio != m.prio || dedup != m.dedup || retry != m.retry || attempts != m.attempt {
			r.fail("DLQ row %d of message %d: (row %d %s prio %d dedup %q retry_count %d attempts %d), want (%d %s %d %q %d %d)",
				dlqID, id, dlqID, queue, prio, dedup, retry, attempts, m.dlqID, m.queue, m.prio, m.dedup, m.retry, m.attempt)
		}
		r.checkErrors(m, errs, "DLQ")
		if m.redrives > 0 {
			r.seen["dlq after redrive"]++
		}
		if e := m.errs[len(m.errs)-1]; (e.lease && !strings.HasPrefix(last, e.text)) || (!e.lease && last != e.text) {
			r.fail("DLQ row %d: error %q is not the last entry's %q", dlqID, last, e.text)
		}
	}
	r.must(rows.Err(), "check dlq")

	for id, m := range r.msgs {
		switch m.place {
		case smPending, smProcessing:
			if seen[id] != "live" {
				r.fail("message %d is lost: the model has it %s, pgflow_messages does not hold it (DLQ: %v)", id, m.place, seen[id] == "dead")
			}
		case smDead:
			if seen[id] != "dead" {
				r.fail("message %d is lost: the model has it dead-lettered, the DLQ does not hold it (live: %v)", id, seen[id] == "live")
			}
		case smGone:
			if seen[id] != "" {
				r.fail("message %d was acknowledged or purged but is %s", id, seen[id])
			}
		}
	}
}

package pgflow_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgflow-go/pgflow"
	"github.com/pgflow-go/pgflow/pgflowtest"
)

// sqlPool opens a pool on db's schema as a client in another language
// would: search_path set, nothing but SQL.
func sqlPool(t testing.TB, db *pgflowtest.DB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	// PgBouncer refuses search_path as a startup parameter; a client behind
	// it schema-qualifies the functions instead (docs/sql.md).
	pgflowtest.SkipIfPooled(t, "the SQL API tests set search_path at connect")
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["search_path"] = db.Schema
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// claimed is one row of pgflow_claim(queue, n, lease_ms, consumer).
type claimed struct {
	ID, Token                                 int64
	Payload, Headers                          string
	Priority, Attempt, RetryCount, MaxRetries int
	CreatedAt, LockedUntil                    time.Time
}

func sqlClaim(t testing.TB, pool *pgxpool.Pool, queue string, n int) []claimed {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT id, claim_token, payload::text, headers::text, priority, attempt, retry_count, max_retries, created_at, locked_until
		 FROM pgflow_claim($1::text, $2::integer, $3::integer, $4::text)`, queue, n, 30000, "sql-test")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		err := r.Scan(&c.ID, &c.Token, &c.Payload, &c.Headers, &c.Priority, &c.Attempt, &c.RetryCount, &c.MaxRetries,
			&c.CreatedAt, &c.LockedUntil)
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Produce and consume through the SQL API alone: send and send_batch
// return ids in input order, claim returns them in claim order with a
// token, ack deletes only with the token that holds the message.
func TestSQLAPIProduceAndConsume(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	pool := sqlPool(t, db, 2)
	ctx := context.Background()

	var low, high int64
	if err := pool.QueryRow(ctx, `SELECT pgflow_send('jobs', '{"n": 1}')`).Scan(&low); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT pgflow_send('jobs', '{"n": 2}', '{"traceparent": "00-abc"}', 7)`).Scan(&high); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT * FROM pgflow_send_batch('jobs', ARRAY['{"n": 3}', '[4]', '"five"']::jsonb[],
		ARRAY['{"k": "v"}', NULL, '{}']::jsonb[])`)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != 3 || !(low < high && high < batch[0] && batch[0] < batch[1] && batch[1] < batch[2]) {
		t.Fatalf("ids %d, %d, batch %v: want rising ids in input order", low, high, batch)
	}

	got := sqlClaim(t, pool, "jobs", 10)
	wantOrder := []int64{high, low, batch[0], batch[1], batch[2]}
	if len(got) != len(wantOrder) {
		t.Fatalf("claimed %d messages, want %d", len(got), len(wantOrder))
	}
	for i, m := range got {
		if m.ID != wantOrder[i] {
			t.Fatalf("claim order %v..., want %v", got, wantOrder)
		}
		if m.Attempt != 1 || m.RetryCount != 0 || m.MaxRetries != 3 || m.Token == 0 {
			t.Fatalf("message %d: attempt %d, retry_count %d, max_retries %d, token %d", m.ID, m.Attempt, m.RetryCount, m.MaxRetries, m.Token)
		}
	}
	if got[0].Headers != `{"traceparent": "00-abc"}` || got[0].Priority != 7 || got[2].Headers != `{"k": "v"}` || got[3].Headers != `{}` {
		t.Fatalf("headers or priority lost: %+v", got)
	}
	if got[4].Payload != `"five"` {
		t.Fatalf("payload %s, want \"five\"", got[4].Payload)
	}

	var ok bool
	if err := pool.QueryRow(ctx, `SELECT pgflow_ack($1::bigint, $2::bigint)`, got[0].ID, got[0].Token+1).Scan(&ok); err != nil || ok {
		t.Fatalf("ack with a wrong token = %v, %v; want false", ok, err)
	}
	for _, m := range got {
		if err := pool.QueryRow(ctx, `SELECT pgflow_ack($1::bigint, $2::bigint)`, m.ID, m.Token).Scan(&ok); err != nil || !ok {
			t.Fatalf("ack %d = %v, %v", m.ID, ok, err)
		}
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("%d messages left after acking all", n)
	}

	// A send or batch with its own priority creates the queue's row too.
	if _, err := pool.Exec(ctx, `SELECT pgflow_send('prio-only', '{}', priority => 5)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT pgflow_send_batch('prio-batch', ARRAY['{}']::jsonb[], priority => 5)`); err != nil {
		t.Fatal(err)
	}
	if n := db.Count(t, "pgflow_queues", "queue_name IN ('prio-only', 'prio-batch')"); n != 2 {
		t.Fatalf("%d queue rows for queues first sent to with a priority, want 2", n)
	}
}

// pgflow_send with a dedup key a live message holds writes nothing and
// returns that message's id, as Publish with WithDedupKey does; once the
// holder is acknowledged the key is free again.
func TestSQLAPISendDedup(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	pool := sqlPool(t, db, 2)
	c := newClient(t, db, pgflow.Config{})
	ctx := context.Background()

	goID, err := c.Publish(ctx, "dedup", map[string]int{"n": 1}, pgflow.WithDedupKey("order-1"))
	if err != nil {
		t.Fatal(err)
	}
	var sqlID int64
	if err := pool.QueryRow(ctx, `SELECT pgflow_send('dedup', '{"n": 2}', dedup_key => 'order-1')`).Scan(&sqlID); err != nil {
		t.Fatal(err)
	}
	if sqlID != goID {
		t.Fatalf("pgflow_send with a held key returned %d, want the holder %d", sqlID, goID)
	}
	again, err := c.Publish(ctx, "dedup", map[string]int{"n": 3}, pgflow.WithDedupKey("order-1"))
	if err != nil || again != goID {
		t.Fatalf("Publish after pgflow_send = %d, %v; want %d", again, err, goID)
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	m := sqlClaim(t, pool, "dedup", 1)[0]
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT pgflow_ack($1::bigint, $2::bigint)`, m.ID, m.Token).Scan(&ok); err != nil || !ok {
		t.Fatalf("ack = %v, %v", ok, err)
	}
	if err := pool.QueryRow(ctx, `SELECT pgflow_send('dedup', '{"n": 4}', dedup_key => 'order-1')`).Scan(&sqlID); err != nil {
		t.Fatal(err)
	}
	if sqlID == goID {
		t.Fatal("key still taken after its holder was acknowledged")
	}
}

// A message sent with pgflow_send wakes an idle Go consumer through its
// notification, not its poll (an hour here).
func TestSQLAPISendWakesGoConsumer(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	pool := sqlPool(t, db, 1)
	c := newClient(t, db, pgflow.Config{PollInterval: time.Hour})
	idle := idleSignal(c, "wake", false)
	got := make(chan pgflow.Message, 1)
	err := c.Consume(pgflow.ConsumerConfig{Queue: "wake", Workers: 1, Handler: func(_ context.Context, m *pgflow.Message) error {
		got <- *m
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	await(t, "the consumer to go idle", idle)
	var id int64
	if err := pool.QueryRow(ctx, `SELECT pgflow_send('wake', '{"hello": "go"}', '{"traceparent": "00-1"}')`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	m := await(t, "the Go handler", got)
	if m.ID != id || string(m.Payload) != `{"hello": "go"}` || m.Headers["traceparent"] != "00-1" {
		t.Fatalf("got %d %s %v", m.ID, m.Payload, m.Headers)
	}
}

// Every bad argument is refused with SQLSTATE 22023 and a message naming
// it, and nothing is written.
func TestSQLAPIBadInput(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	pool := sqlPool(t, db, 1)
	ctx := context.Background()
	for _, tc := range []struct{ sql, names string }{
		{`SELECT pgflow_send('bad queue', '{}')`, "queue"},
		{`SELECT pgflow_send(NULL, '{}')`, "queue"},
		{`SELECT pgflow_send('q', NULL)`, "payload"},
		{`SELECT pgflow_send('q', '{}', '[1]')`, "invalid headers"},
		{`SELECT pgflow_send('q', '{}', '{"n": 1}')`, "headers"},
		{`SELECT pgflow_send('q', '{}', '{"": "x"}')`, "headers"},
		{`SELECT pgflow_send('q', '{}', priority => 32768)`, "priority"},
		{`SELECT pgflow_send('q', '{}', delay_ms => -1)`, "delay_ms"},
		{`SELECT pgflow_send('q', '{}', dedup_key => '')`, "dedup_key"},
		{`SELECT pgflow_send('q', '{}', expiry_ms => 0)`, "expiry_ms"},
		{`SELECT * FROM pgflow_send_batch('q', ARRAY['{}']::jsonb[], expiry_ms => -1)`, "expiry_ms"},
		{`SELECT * FROM pgflow_publish('t', '{}', expiry_ms => 0, allow_no_subscribers => true)`, "expiry_ms"},
		{`SELECT * FROM pgflow_publish('t', '{}', visible_at => now() + interval '1 hour', expires_at => now(), allow_no_subscribers => true)`, "expires_at"},
		{`SELECT * FROM pgflow_send_batch('q', NULL)`, "payloads"},
		{`SELECT * FROM pgflow_send_batch('q', ARRAY['{}', NULL]::jsonb[])`, "message 2 of the batch: invalid payload"},
		{`SELECT * FROM pgflow_send_batch('q', ARRAY['{}', '{}']::jsonb[], ARRAY['{}']::jsonb[])`, "headers"},
		{`SELECT * FROM pgflow_send_batch('q', ARRAY['{}']::jsonb[], ARRAY['"x"']::jsonb[])`, "message 1 of the batch: invalid headers"},
		{`SELECT * FROM pgflow_claim('q', 0, 1000, 'c')`, "n"},
		{`SELECT * FROM pgflow_claim('q', 1, 0, 'c')`, "lease_ms"},
		{`SELECT * FROM pgflow_claim('q', 1, 1000, '')`, "consumer"},
		{`SELECT pgflow_fail(1, 1, NULL)`, "error"},
		{`SELECT pgflow_fail(1, 1, 'x', -5)`, "retry_after_ms"},
		{`SELECT pgflow_extend(1, 1, 0)`, "lease_ms"},
	} {
		_, err := pool.Exec(ctx, tc.sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22023" {
			t.Errorf("%s: err %v, want SQLSTATE 22023", tc.sql, err)
			continue
		}
		if !strings.HasPrefix(pgErr.Message, "pgflow: ") || !strings.Contains(pgErr.Message, tc.names) {
			t.Errorf("%s: message %q does not name %q", tc.sql, pgErr.Message, tc.names)
		}
	}
	if n := db.Count(t, "pgflow_messages", ""); n != 0 {
		t.Fatalf("%d messages written by refused calls", n)
	}
}

// The SQL API's overloads of the engine's names resolve both ways: the
// engine's array forms (as the Go consumer and psql call them) and the
// one-delivery forms, with literals through the simple protocol as psql
// sends them.
func TestSQLAPIOverloadsResolve(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	pool := sqlPool(t, db, 1)
	ctx := context.Background()
	simple := func(sql string, dest ...any) {
		t.Helper()
		if err := pool.QueryRow(ctx, sql, pgx.QueryExecModeSimpleProtocol).Scan(dest...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var id, token int64
	simple(`SELECT pgflow_send('o', '{}')`, &id)
	// The engine's claim, with literals.
	simple(`SELECT id, claim_token FROM pgflow_claim('o', 1, 'psql', 60000) WHERE id IS NOT NULL`, &id, &token)
	var ok bool
	simple(`SELECT pgflow_extend(`+itoa(id)+`, `+itoa(token)+`, 60000)`, &ok)
	if !ok {
		t.Fatal("pgflow_extend(id, token, lease) = false for the holder")
	}
	var n int
	simple(`SELECT count(*) FROM pgflow_extend(ARRAY[`+itoa(id)+`], ARRAY[`+itoa(token)+`], 60000)`, &n)
	if n != 1 {
		t.Fatal("engine pgflow_extend with ARRAY literals did not extend")
	}
	simple(`SELECT pgflow_release(`+itoa(id)+`, `+itoa(token)+`)`, &ok)
	if !ok {
		t.Fatal("pgflow_release(id, token) = false for the holder")
	}
	// The API's claim, with literals.
	simple(`SELECT id, claim_token FROM pgflow_claim('o', 1, 60000, 'psql')`, &id, &token)
	var outcome *string
	simple(`SELECT pgflow_fail(`+itoa(id)+`, `+itoa(token)+`, 'boom', 0)`, &outcome)
	if outcome == nil || *outcome != "retry" {
		t.Fatalf("pgflow_fail = %v, want retry", outcome)
	}
	simple(`SELECT id, claim_token FROM pgflow_claim('o', 1, 60000, 'psql')`, &id, &token)
	simple(`SELECT pgflow_ack(ARRAY[`+itoa(id)+`], ARRAY[`+itoa(token)+`])`, &n)
	if n != 1 {
		t.Fatal("engine pgflow_ack with ARRAY literals did not acknowledge")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Every send path of the SQL API, and PublishTopic, gives a message its
// expiry: the one asked for, else the queue's default, counted from the
// time it becomes visible; an expired message is dead-lettered with reason
// expired instead of being claimed.
func TestSQLAPIExpiry(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	pool := sqlPool(t, db, 2)
	client := newClient(t, db, pgflow.Config{})
	ctx := context.Background()
	if err := client.DeclareQueue(ctx, pgflow.QueueConfig{Name: "rollbacks", Expiry: pgflow.Set(10 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Subscribe(ctx, "deploys", "rollbacks"); err != nil {
		t.Fatal(err)
	}
	lifetime := func(id int64) time.Duration {
		t.Helper()
		var d time.Duration
		if err := pool.QueryRow(ctx, `SELECT expires_at - visible_at FROM pgflow_messages WHERE id = $1`, id).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var id int64
	for _, tc := range []struct {
		sql  string
		want time.Duration
	}{
		{`SELECT pgflow_send('rollbacks', '{}')`, 10 * time.Minute},
		{`SELECT pgflow_send('rollbacks', '{}', delay_ms => 60000, expiry_ms => 5000)`, 5 * time.Second},
		{`SELECT pgflow_send('rollbacks', '{}', dedup_key => 'k', expiry_ms => 7000)`, 7 * time.Second},
		{`SELECT * FROM pgflow_send_batch('rollbacks', ARRAY['{}']::jsonb[])`, 10 * time.Minute},
		{`SELECT * FROM pgflow_send_batch('rollbacks', ARRAY['{}']::jsonb[], expiry_ms => 3000)`, 3 * time.Second},
		{`SELECT id FROM pgflow_publish('deploys', '{}')`, 10 * time.Minute},
		{`SELECT id FROM pgflow_publish('deploys', '{}', expiry_ms => 2000)`, 2 * time.Second},
		{`SELECT id FROM pgflow_publish('deploys', '{}', visible_at => now() + interval '1 minute', expires_at => now() + interval '2 minutes')`, time.Minute},
	} {
		if err := pool.QueryRow(ctx, tc.sql).Scan(&id); err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if got := lifetime(id); got != tc.want {
			t.Errorf("%s: expires %v after visible, want %v", tc.sql, got, tc.want)
		}
	}
	sent, err := client.PublishTopic(ctx, "deploys", map[string]int{"n": 1}, pgflow.WithExpiry(1500*time.Microsecond))
	if err != nil || len(sent) != 1 {
		t.Fatalf("PublishTopic = %v, %v", sent, err)
	}
	if got := lifetime(sent[0].ID); got != 2*time.Millisecond {
		t.Errorf("PublishTopic WithExpiry(1.5ms): expires %v after visible, want 2ms (whole milliseconds, rounded up)", got)
	}

	// An expired message is not claimed: it goes to the DLQ with its reason.
	if _, err := pool.Exec(ctx, `DELETE FROM pgflow_messages`); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT id FROM pgflow_publish('deploys', '{}', expires_at => now() - interval '1 second')`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if got := sqlClaim(t, pool, "rollbacks", 10); len(got) != 0 {
		t.Fatalf("claimed %+v, want nothing: the message expired", got)
	}
	if _, err := pool.Exec(ctx, `SELECT pgflow_expire(100)`); err != nil {
		t.Fatal(err)
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT reason FROM pgflow_dlq WHERE message_id = $1`, id).Scan(&reason); err != nil || reason != "expired" {
		t.Fatalf("dead letter of %d: reason %q, %v; want expired", id, reason, err)
	}
}

// pgflow_dlq_redrive and pgflow_dlq_purge refuse a call that names neither
// a queue nor ids, move or delete every matching dead letter across several
// 1,000-row chunks, and leave a dead letter whose dedup key a live message
// holds in the DLQ.
func TestSQLAPIDLQRedriveAndPurge(t *testing.T) {
	t.Parallel()
	db := pgflowtest.New(t)
	pool := sqlPool(t, db, 1)
	ctx := context.Background()
	for _, sql := range []string{`SELECT pgflow_dlq_redrive(NULL)`, `SELECT pgflow_dlq_purge(NULL)`,
		`SELECT pgflow_dlq_redrive('bad queue')`, `SELECT pgflow_dlq_purge('bad queue')`} {
		_, err := pool.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22023" || !strings.Contains(pgErr.Message, "queue") {
			t.Errorf("%s: err %v, want SQLSTATE 22023 naming the queue", sql, err)
		}
	}

	// 2,100 dead letters in a and c (three chunks each), two in b, and one
	// more in a whose dedup key a live message of a holds.
	deadLetter := func(queue string, from, n int, dedupKey any) {
		t.Helper()
		db.Exec(t, `INSERT INTO pgflow_dlq (message_id, queue_name, payload, dedup_key, error, message_created_at)
			SELECT i, $1, jsonb_build_object('i', i), $4, 'boom', now() FROM generate_series($2::bigint, $3::bigint) i`,
			queue, from, from+n-1, dedupKey)
	}
	deadLetter("a", 1_000_001, 2100, nil)
	deadLetter("a", 1_100_001, 1, "k")
	deadLetter("b", 2_000_001, 2, nil)
	deadLetter("c", 3_000_001, 2100, nil)
	if _, err := pool.Exec(ctx, `SELECT pgflow_send('a', '{}', dedup_key => 'k')`); err != nil {
		t.Fatal(err)
	}

	var n int
	if err := pool.QueryRow(ctx, `SELECT pgflow_dlq_redrive('a')`).Scan(&n); err != nil || n != 2100 {
		t.Fatalf("redrive a: %d, %v; want 2100", n, err)
	}
	if got := db.Count(t, "pgflow_messages", "queue_name = 'a' AND status = 'pending'"); got != 2101 {
		t.Fatalf("%d pending messages in a after the redrive, want 2100 and the live one", got)
	}
	if got := db.Count(t, "pgflow_dlq", "queue_name = 'a' AND dedup_key = 'k'"); got != 1 || db.Count(t, "pgflow_dlq", "queue_name = 'a'") != 1 {
		t.Fatalf("the DLQ of a keeps %d rows, want only the one with the live dedup key", db.Count(t, "pgflow_dlq", "queue_name = 'a'"))
	}

	var firstB int64
	if err := pool.QueryRow(ctx, `SELECT min(id) FROM pgflow_dlq WHERE queue_name = 'b'`).Scan(&firstB); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sql  string
		args []any
		want int
	}{
		{`SELECT pgflow_dlq_purge(NULL, ARRAY[$1::bigint])`, []any{firstB}, 1},
		{`SELECT pgflow_dlq_purge('b')`, nil, 1},
		{`SELECT pgflow_dlq_purge('c')`, nil, 2100},
		{`SELECT pgflow_dlq_purge('a')`, nil, 1},
	} {
		if err := pool.QueryRow(ctx, tc.sql, tc.args...).Scan(&n); err != nil || n != tc.want {
			t.Fatalf("%s: %d, %v; want %d", tc.sql, n, err, tc.want)
		}
	}
	if got := db.Count(t, "pgflow_dlq", ""); got != 0 {
		t.Fatalf("%d dead letters left after purging every queue", got)
	}
}

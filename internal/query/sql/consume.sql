-- Consuming: claim, acknowledge, fail, extend, release, rescue.
-- Every statement that finishes a delivery matches (id, attempt): attempt is
-- bumped by each claim, so a consumer whose lease was taken over cannot touch
-- the new delivery.

-- name: HotPathSettings
-- Sent before each consumer statement (ack, fail, heartbeat, release) in
-- the same round trip and implicit transaction (a pgx batch; set_config(...,
-- true) is SET LOCAL as one preparable statement), so it applies when the
-- server plans the statement that follows.
-- These statements are prepared. Left to itself PostgreSQL plans each run
-- for its parameters five times, then either keeps planning (~0.2 ms per
-- claim, a tenth of the server's CPU in a drain; docs/performance.md) or
-- reuses a generic plan made once without the parameter values, kept until
-- the table's statistics change. Made while the table was empty (or with
-- LIMIT $2 estimated at a tenth of a large table) that plan is a sequential
-- scan or a hash join, and a burst that fills the table would pay for it on
-- every call until autovacuum runs ANALYZE. So the generic plan is always
-- used, and made with those plan shapes priced out: index lookups and nested
-- loops at any table size. TestHotPathGenericPlans checks the plans.
SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_seqscan', 'off', true),
       set_config('enable_bitmapscan', 'off', true),
       set_config('enable_hashjoin', 'off', true),
       set_config('enable_mergejoin', 'off', true);

-- name: ClaimSettings
-- HotPathSettings for claims, which also commit without waiting for their
-- WAL flush (synchronous_commit off for the claim's own transaction only). A
-- claim lost in a server crash leaves its messages pending, to be delivered
-- again: the same at-least-once outcome as a consumer crash, without the
-- lease wait (TestMessageClaimedJustBeforeAServerCrashIsStillHandled). Any
-- later synchronous commit (the ack, a retry, the handler's own transaction)
-- flushes the claim's WAL with its own, so nothing that follows a delivery
-- can survive without it. One consequence: the next claim of such a message
-- reuses the lost claim's attempt number, so a consumer that outlived the
-- crash still running the lost delivery can acknowledge or fail the new one
-- (a duplicate run, or a failure counted against it; never a lost message).
SELECT set_config('synchronous_commit', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_seqscan', 'off', true),
       set_config('enable_bitmapscan', 'off', true),
       set_config('enable_hashjoin', 'off', true),
       set_config('enable_mergejoin', 'off', true);

-- name: ClaimMessages
-- $1 queue, $2 how many, $3 consumer id, $4 lease in ms. Run after
-- ClaimSettings. Claims nothing while the queue is paused. The claimed rows
-- are updated by id = ANY (ARRAY(...)) rather than a join on the CTE, whose
-- row count a generic plan cannot know.
WITH next AS (
    SELECT m.id
    FROM {{schema}}.pgflow_messages m
    WHERE m.queue_name = $1
      AND m.status = 'pending'
      AND m.visible_at <= now()
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_queues q WHERE q.queue_name = $1 AND q.paused)
    ORDER BY m.priority DESC, m.visible_at, m.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {{schema}}.pgflow_messages m
SET status = 'processing',
    attempt = m.attempt + 1,
    locked_by = $3,
    locked_until = clock_timestamp() + $4::bigint * interval '1 millisecond'
WHERE m.id = ANY (ARRAY(SELECT id FROM next))
RETURNING m.id, m.payload, m.headers, m.priority, m.attempt, m.retry_count,
          m.created_at, m.visible_at, m.locked_until;

-- name: ClaimMessagesAfter
-- ClaimMessages for a consumer that remembers the claim-order key of the
-- last message it claimed: the same priority ($5) is scanned from the key
-- ($6 visible_at, $7 id; the consumer passes a little before its last
-- claimed key) on, higher priorities from their start.
-- Both index scans start at their first possible row, so the scan does not
-- walk the index entries of messages already claimed; while a long
-- transaction pins the xmin horizon those entries cannot be removed and a
-- scan from the start of the queue visits every one of them. Rows behind
-- the key (lower priorities, late commits) are left to ClaimMessages, which
-- the consumer runs at least every 100 ms while it has free workers.
WITH higher AS (
    SELECT m.id, m.priority, m.visible_at
    FROM {{schema}}.pgflow_messages m
    WHERE m.queue_name = $1
      AND m.status = 'pending'
      AND m.visible_at <= now()
      AND m.priority > $5::smallint
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_queues q WHERE q.queue_name = $1 AND q.paused)
    ORDER BY m.priority DESC, m.visible_at, m.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), same AS (
    SELECT m.id, m.priority, m.visible_at
    FROM {{schema}}.pgflow_messages m
    WHERE m.queue_name = $1
      AND m.status = 'pending'
      AND m.visible_at <= now()
      AND m.priority = $5::smallint
      AND (m.visible_at, m.id) > ($6::timestamptz, $7::bigint)
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_queues q WHERE q.queue_name = $1 AND q.paused)
    ORDER BY m.priority DESC, m.visible_at, m.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), cand AS (
    SELECT * FROM higher
    UNION ALL
    SELECT * FROM same
), next AS (
    SELECT c.id FROM cand c
    ORDER BY c.priority DESC, c.visible_at, c.id
    LIMIT $2
)
UPDATE {{schema}}.pgflow_messages m
SET status = 'processing',
    attempt = m.attempt + 1,
    locked_by = $3,
    locked_until = clock_timestamp() + $4::bigint * interval '1 millisecond'
WHERE m.id = ANY (ARRAY(SELECT id FROM next))
RETURNING m.id, m.payload, m.headers, m.priority, m.attempt, m.retry_count,
          m.created_at, m.visible_at, m.locked_until;

-- name: AckMessages
-- Handler succeeded: the message is done. $1 ids, $2 attempts.
DELETE FROM {{schema}}.pgflow_messages m
USING unnest($1::bigint[], $2::int[]) AS a(id, attempt)
WHERE m.id = a.id AND m.attempt = a.attempt;

-- name: AckMessage
-- One message, inside the handler's own transaction.
DELETE FROM {{schema}}.pgflow_messages WHERE id = $1 AND attempt = $2;

-- name: FailMessages
-- Handler failed. $1 ids, $2 attempts, $3 errors, $4 retry delay in ms,
-- $5 permanent. A message with no retries left, or failed permanently, moves
-- to the DLQ in this statement; the others wait $4 ms and are retried.
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::bool[])
        AS f(id, attempt, error, delay_ms, permanent)
), target AS (
    SELECT m.id, f.error, f.delay_ms,
           (f.permanent OR m.retry_count + 1 > coalesce(q.max_retries, 3)) AS dead
    FROM {{schema}}.pgflow_messages m
    JOIN f ON m.id = f.id AND m.attempt = f.attempt
    LEFT JOIN {{schema}}.pgflow_queues q ON q.queue_name = m.queue_name
    FOR UPDATE OF m
), dead AS (
    DELETE FROM {{schema}}.pgflow_messages m
    USING target t
    WHERE m.id = t.id AND t.dead
    RETURNING m.id, m.queue_name, m.payload, m.headers, m.priority, m.dedup_key, m.errors,
              m.retry_count, m.attempt, m.created_at, t.error AS last_error
), buried AS (
    INSERT INTO {{schema}}.pgflow_dlq
        (message_id, queue_name, payload, headers, priority, dedup_key, error, errors, retry_count, attempts, message_created_at)
    SELECT d.id, d.queue_name, d.payload, d.headers, d.priority, d.dedup_key, d.last_error,
           d.errors || jsonb_build_array(jsonb_build_object('attempt', d.attempt, 'error', d.last_error, 'at', now())),
           d.retry_count + 1, d.attempt, d.created_at
    FROM dead d
    RETURNING message_id
), retried AS (
    UPDATE {{schema}}.pgflow_messages m
    SET status = 'pending',
        retry_count = m.retry_count + 1,
        locked_by = NULL,
        locked_until = NULL,
        visible_at = now() + t.delay_ms * interval '1 millisecond',
        errors = m.errors || jsonb_build_array(jsonb_build_object('attempt', m.attempt, 'error', t.error, 'at', now()))
    FROM target t
    WHERE m.id = t.id AND NOT t.dead
    RETURNING m.id
)
SELECT message_id AS id, true AS dead FROM buried
UNION ALL
SELECT id, false AS dead FROM retried;

-- name: ExtendLeases
-- Heartbeat. $1 ids, $2 attempts, $3 lease in ms. Returns the ids whose
-- lease this consumer still holds.
UPDATE {{schema}}.pgflow_messages m
SET locked_until = clock_timestamp() + $3::bigint * interval '1 millisecond'
FROM unnest($1::bigint[], $2::int[]) AS l(id, attempt)
WHERE m.id = l.id AND m.attempt = l.attempt AND m.status = 'processing'
RETURNING m.id;

-- name: ReleaseMessages
-- Graceful stop: hand unfinished messages back, visible at once. Not a failed
-- attempt. $1 ids, $2 attempts.
UPDATE {{schema}}.pgflow_messages m
SET status = 'pending', locked_by = NULL, locked_until = NULL, visible_at = now()
FROM unnest($1::bigint[], $2::int[]) AS l(id, attempt)
WHERE m.id = l.id AND m.attempt = l.attempt AND m.status = 'processing'
RETURNING m.id;

-- name: RescueExpiredLeases
-- Leases that ran out (consumer crashed, hung or lost its connection): each
-- counts as a failed attempt. With retries left the message is visible again
-- at once; without, it moves to the DLQ. $1 at most this many.
WITH expired AS (
    SELECT m.id, (m.retry_count + 1 > coalesce(q.max_retries, 3)) AS dead,
           'lease expired: consumer ' || coalesce(m.locked_by, '?') ||
           ' neither finished nor extended its lease by ' || m.locked_until::text AS error
    FROM {{schema}}.pgflow_messages m
    LEFT JOIN {{schema}}.pgflow_queues q ON q.queue_name = m.queue_name
    WHERE m.status = 'processing' AND m.locked_until < now()
    ORDER BY m.locked_until
    LIMIT $1
    FOR UPDATE OF m SKIP LOCKED
), dead AS (
    DELETE FROM {{schema}}.pgflow_messages m
    USING expired e
    WHERE m.id = e.id AND e.dead
    RETURNING m.id, m.queue_name, m.payload, m.headers, m.priority, m.dedup_key, m.errors,
              m.retry_count, m.attempt, m.created_at, m.locked_by, e.error AS last_error
), buried AS (
    INSERT INTO {{schema}}.pgflow_dlq
        (message_id, queue_name, payload, headers, priority, dedup_key, error, errors, retry_count, attempts, message_created_at)
    SELECT d.id, d.queue_name, d.payload, d.headers, d.priority, d.dedup_key, d.last_error,
           d.errors || jsonb_build_array(jsonb_build_object('attempt', d.attempt, 'error', d.last_error, 'at', now())),
           d.retry_count + 1, d.attempt, d.created_at
    FROM dead d
    RETURNING message_id
), rescued AS (
    UPDATE {{schema}}.pgflow_messages m
    SET status = 'pending',
        retry_count = m.retry_count + 1,
        locked_by = NULL,
        locked_until = NULL,
        visible_at = now(),
        errors = m.errors || jsonb_build_array(jsonb_build_object('attempt', m.attempt, 'error', e.error, 'at', now()))
    FROM expired e
    WHERE m.id = e.id AND NOT e.dead
    RETURNING m.id, m.queue_name, m.attempt
)
SELECT d.id, d.queue_name, d.attempt, true AS dead FROM dead d
UNION ALL
SELECT r.id, r.queue_name, r.attempt, false AS dead FROM rescued r;

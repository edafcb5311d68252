-- pgflow schema, version 4: every state change of a live message has one
-- home, a function of this migration, and every client path calls it.
--
--   pgflow_claim    pending -> processing (a new delivery, a new claim token)
--   pgflow_ack      processing -> gone (handler succeeded)
--   pgflow_fail     processing -> pending (retry) or DLQ (handler failed)
--   pgflow_rescue   processing, lease expired -> pending or DLQ
--   pgflow_extend   processing -> processing, lease extended (heartbeat)
--   pgflow_release  processing -> pending, not a failed attempt (stop)
--   pgflow_settle   the retry-or-bury step that pgflow_fail and
--                   pgflow_rescue share: the only place a live message
--                   moves to pgflow_dlq.
--
-- They are PL/pgSQL, not SQL functions: PostgreSQL 15 plans the statements
-- of an SQL function on every call, while PL/pgSQL keeps each statement's
-- plan for the session. Their SET clauses put the planner settings the hot
-- path needs (always the generic plan, made with sequential scans, bitmap
-- scans, hash and merge joins priced out: index lookups and nested loops at
-- any table size) in force while the function runs, so no settings
-- statement has to precede the call.

-- claim_token guards every change to a delivery: a new random value per
-- claim, cleared when the message is pending again. attempt stays the
-- delivery count and locked_by the consumer's id (for the ops views).
-- Random rather than a sequence: a claim commits without waiting for its
-- WAL flush, and a sequence can hand out the values of a claim lost in a
-- server crash again after recovery; a random 53-bit value cannot repeat
-- for the same message but by a 1-in-10^15 chance.
ALTER TABLE {{schema}}.pgflow_messages ADD COLUMN claim_token bigint;

-- The queue row of every claimed message exists (pgflow_claim creates it if
-- needed), so the retry limit is read from pgflow_queues.max_retries, whose
-- column default is the only default.
CREATE FUNCTION {{schema}}.pgflow_settle(p_ids bigint[], p_errors text[], p_delays_ms bigint[], p_permanent boolean[])
RETURNS TABLE (id bigint, queue_name text, attempt integer, dead boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
BEGIN
    -- The caller has locked the rows of p_ids (FOR UPDATE).
    RETURN QUERY
    WITH f AS (
        SELECT * FROM unnest(p_ids, p_errors, p_delays_ms, p_permanent) AS f(id, error, delay_ms, permanent)
    ), target AS (
        SELECT m.id, f.error, f.delay_ms,
               (f.permanent OR m.retry_count + 1 > q.max_retries) AS dead
        FROM f
        JOIN {{schema}}.pgflow_messages m ON m.id = f.id
        JOIN {{schema}}.pgflow_queues q ON q.queue_name = m.queue_name
    ), gone AS (
        DELETE FROM {{schema}}.pgflow_messages m
        USING target t
        WHERE m.id = t.id AND t.dead
        RETURNING m.id, m.queue_name, m.payload, m.headers, m.priority, m.dedup_key, m.errors,
                  m.retry_count, m.attempt, m.created_at, t.error AS last_error
    ), buried AS (
        INSERT INTO {{schema}}.pgflow_dlq
            (message_id, queue_name, payload, headers, priority, dedup_key, error, errors, retry_count, attempts, message_created_at)
        SELECT g.id, g.queue_name, g.payload, g.headers, g.priority, g.dedup_key, g.last_error,
               g.errors || jsonb_build_array(jsonb_build_object('attempt', g.attempt, 'error', g.last_error, 'at', now())),
               g.retry_count + 1, g.attempt, g.created_at
        FROM gone g
        RETURNING message_id, queue_name, attempts
    ), retried AS (
        UPDATE {{schema}}.pgflow_messages m
        SET status = 'pending',
            retry_count = m.retry_count + 1,
            locked_by = NULL,
            locked_until = NULL,
            claim_token = NULL,
            visible_at = now() + t.delay_ms * interval '1 millisecond',
            errors = m.errors || jsonb_build_array(jsonb_build_object('attempt', m.attempt, 'error', t.error, 'at', now()))
        FROM target t
        WHERE m.id = t.id AND NOT t.dead
        RETURNING m.id, m.queue_name, m.attempt
    )
    SELECT b.message_id, b.queue_name, b.attempts, true FROM buried b
    UNION ALL
    SELECT r.id, r.queue_name, r.attempt, false FROM retried r;
END
$$;

-- Claims up to p_limit messages of p_queue in claim order (priority
-- descending, then visible_at, then id), nothing while the queue is paused.
-- With p_after_priority set, the scan of that priority starts after
-- (p_after_visible_at, p_after_id) and higher priorities from their start:
-- a consumer that remembers its last claimed key skips the index entries of
-- messages it already claimed, which a pinned xmin horizon keeps from being
-- cleaned up; rows behind the key are left to the next claim from the start.
-- When fewer than p_limit are claimed, one more row follows with id NULL and
-- next_in_us set to how long until the queue's next delayed or backed-off
-- message becomes visible (NULL: none), on the database clock, so the
-- consumer can wake up exactly then.
-- The claim's transaction commits without waiting for its WAL flush
-- (synchronous_commit off for that transaction only; set_config(..., true)
-- lasts until its end, as no SET clause of the function restores it). A
-- claim lost in a server crash leaves its messages pending, to be delivered
-- again; the next claim gives them a new token, so a consumer still running
-- the lost delivery cannot acknowledge, fail or extend the new one.
CREATE FUNCTION {{schema}}.pgflow_claim(p_queue text, p_limit integer, p_consumer text, p_lease_ms bigint,
                                        p_after_priority smallint DEFAULT NULL,
                                        p_after_visible_at timestamptz DEFAULT NULL,
                                        p_after_id bigint DEFAULT NULL)
RETURNS TABLE (id bigint, payload jsonb, headers jsonb, priority smallint, attempt integer, retry_count integer,
               created_at timestamptz, visible_at timestamptz, locked_until timestamptz, claim_token bigint,
               next_in_us bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
DECLARE
    v_paused boolean;
    v_claimed integer;
    v_known smallint; -- a priority whose messages are probed directly (below)
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT q.paused, q.priority INTO v_paused, v_known FROM {{schema}}.pgflow_queues q WHERE q.queue_name = p_queue;
    IF NOT FOUND THEN
        INSERT INTO {{schema}}.pgflow_queues (queue_name) VALUES (p_queue) ON CONFLICT DO NOTHING;
        v_paused := false;
    END IF;
    IF v_paused THEN
        RETURN;
    END IF;
    IF p_after_priority IS NULL THEN
        -- The claimed rows are updated by id = ANY (ARRAY(...)) rather than
        -- a join on the CTE, whose row count a generic plan cannot know.
        RETURN QUERY
        WITH next AS (
            SELECT m.id
            FROM {{schema}}.pgflow_messages m
            WHERE m.queue_name = p_queue
              AND m.status = 'pending'
              AND m.visible_at <= now()
            ORDER BY m.priority DESC, m.visible_at, m.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {{schema}}.pgflow_messages m
        SET status = 'processing',
            attempt = m.attempt + 1,
            locked_by = p_consumer,
            locked_until = clock_timestamp() + p_lease_ms * interval '1 millisecond',
            claim_token = (random() * 9007199254740991)::bigint
        WHERE m.id = ANY (ARRAY(SELECT n.id FROM next n))
        RETURNING m.id, m.payload, m.headers, m.priority, m.attempt, m.retry_count,
                  m.created_at, m.visible_at, m.locked_until, m.claim_token, NULL::bigint;
    ELSE
        RETURN QUERY
        WITH higher AS (
            SELECT m.id, m.priority, m.visible_at
            FROM {{schema}}.pgflow_messages m
            WHERE m.queue_name = p_queue
              AND m.status = 'pending'
              AND m.visible_at <= now()
              AND m.priority > p_after_priority
            ORDER BY m.priority DESC, m.visible_at, m.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), same AS (
            SELECT m.id, m.priority, m.visible_at
            FROM {{schema}}.pgflow_messages m
            WHERE m.queue_name = p_queue
              AND m.status = 'pending'
              AND m.visible_at <= now()
              AND m.priority = p_after_priority
              AND (m.visible_at, m.id) > (p_after_visible_at, p_after_id)
            ORDER BY m.priority DESC, m.visible_at, m.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), cand AS (
            SELECT * FROM higher
            UNION ALL
            SELECT * FROM same
        ), next AS (
            SELECT c.id FROM cand c
            ORDER BY c.priority DESC, c.visible_at, c.id
            LIMIT p_limit
        )
        UPDATE {{schema}}.pgflow_messages m
        SET status = 'processing',
            attempt = m.attempt + 1,
            locked_by = p_consumer,
            locked_until = clock_timestamp() + p_lease_ms * interval '1 millisecond',
            claim_token = (random() * 9007199254740991)::bigint
        WHERE m.id = ANY (ARRAY(SELECT n.id FROM next n))
        RETURNING m.id, m.payload, m.headers, m.priority, m.attempt, m.retry_count,
                  m.created_at, m.visible_at, m.locked_until, m.claim_token, NULL::bigint;
    END IF;
    GET DIAGNOSTICS v_claimed = ROW_COUNT;
    IF v_claimed < p_limit THEN
        v_known := coalesce(p_after_priority, v_known);
        -- The next future visible_at over every priority present: a loose
        -- index scan of pgflow_messages_claim_idx for the priorities, then
        -- one probe per priority that seeks straight to visible_at > now().
        -- Finding a priority walks the index from the start of its range,
        -- over the entries of messages already claimed that a pinned xmin
        -- keeps from being cleaned up. So one priority is not looked for
        -- but probed directly (v_known: the claim's key's priority, else
        -- the queue's default priority, which most messages carry), and
        -- only the ranges of the other priorities present are walked
        -- (W5's pinned third: docs/performance.md).
        RETURN QUERY
        WITH RECURSIVE above AS (
            (SELECT m.priority FROM {{schema}}.pgflow_messages m
             WHERE m.queue_name = p_queue AND m.status = 'pending'
               AND m.priority > coalesce(v_known::integer, -32769)
             ORDER BY m.priority DESC LIMIT 1)
            UNION ALL
            SELECT (SELECT m.priority FROM {{schema}}.pgflow_messages m
                    WHERE m.queue_name = p_queue AND m.status = 'pending' AND m.priority < a.priority
                      AND m.priority > coalesce(v_known::integer, -32769)
                    ORDER BY m.priority DESC LIMIT 1)
            FROM above a
            WHERE a.priority IS NOT NULL
        ), below AS (
            (SELECT m.priority FROM {{schema}}.pgflow_messages m
             WHERE m.queue_name = p_queue AND m.status = 'pending'
               AND m.priority < coalesce(v_known::integer, -32769)
             ORDER BY m.priority DESC LIMIT 1)
            UNION ALL
            SELECT (SELECT m.priority FROM {{schema}}.pgflow_messages m
                    WHERE m.queue_name = p_queue AND m.status = 'pending' AND m.priority < b.priority
                    ORDER BY m.priority DESC LIMIT 1)
            FROM below b
            WHERE b.priority IS NOT NULL
        ), prio AS (
            SELECT a.priority FROM above a WHERE a.priority IS NOT NULL
            UNION ALL
            SELECT v_known WHERE v_known IS NOT NULL
            UNION ALL
            SELECT b.priority FROM below b WHERE b.priority IS NOT NULL
        ), soonest AS (
            SELECT min((SELECT m.visible_at FROM {{schema}}.pgflow_messages m
                        WHERE m.queue_name = p_queue AND m.status = 'pending'
                          AND m.priority = p.priority AND m.visible_at > now()
                        ORDER BY m.visible_at LIMIT 1)) AS at
            FROM prio p
        )
        SELECT NULL::bigint, NULL::jsonb, NULL::jsonb, NULL::smallint, NULL::integer, NULL::integer,
               NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::bigint,
               -- CASE, not greatest() alone: greatest ignores a NULL
               -- argument, and would report "now" for "none".
               CASE WHEN s.at IS NOT NULL
                    THEN greatest(0, (extract(epoch FROM (s.at - clock_timestamp())) * 1000000))::bigint
               END
        FROM soonest s;
    END IF;
END
$$;

-- Handler succeeded: the message is done. Returns how many were deleted.
-- p_async: commit without waiting for the WAL flush. The consumer's own
-- acknowledgements do: its claims wait for them (at most Workers messages
-- held), and a flush per acknowledgement batch cost a W1 drain of 20,000
-- messages about a quarter of its speed. An acknowledgement lost in a
-- server crash (the last fraction of a second of them) leaves its message
-- to be delivered again: at least once, as after a consumer crash before
-- its acknowledgement. Never in a caller's transaction (AckTx passes
-- false): set_config(..., true) would make the caller's commit
-- asynchronous too.
CREATE FUNCTION {{schema}}.pgflow_ack(p_ids bigint[], p_tokens bigint[], p_async boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    v_n integer;
BEGIN
    IF p_async THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    DELETE FROM {{schema}}.pgflow_messages m
    USING unnest(p_ids, p_tokens) AS a(id, token)
    WHERE m.id = a.id AND m.claim_token = a.token;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- Handler failed: retried after p_delays_ms, or dead-lettered when
-- p_permanent or out of retries (pgflow_settle). Deliveries whose token no
-- longer matches are left alone and not returned.
CREATE FUNCTION {{schema}}.pgflow_fail(p_ids bigint[], p_tokens bigint[], p_errors text[], p_delays_ms bigint[], p_permanent boolean[])
RETURNS TABLE (id bigint, queue_name text, attempt integer, dead boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_errors text[];
    v_delays bigint[];
    v_permanent boolean[];
BEGIN
    SELECT array_agg(t.id), array_agg(t.error), array_agg(t.delay_ms), array_agg(t.permanent)
    INTO v_ids, v_errors, v_delays, v_permanent
    FROM (
        SELECT m.id, f.error, f.delay_ms, f.permanent
        FROM unnest(p_ids, p_tokens, p_errors, p_delays_ms, p_permanent) AS f(id, token, error, delay_ms, permanent)
        JOIN {{schema}}.pgflow_messages m ON m.id = f.id AND m.claim_token = f.token
        FOR UPDATE OF m
    ) t;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM {{schema}}.pgflow_settle(v_ids, v_errors, v_delays, v_permanent);
END
$$;

-- Leases that ran out (consumer crashed, hung, or its handler is stuck): each
-- counts as a failed attempt, retried at once or dead-lettered
-- (pgflow_settle). At most p_limit per call.
CREATE FUNCTION {{schema}}.pgflow_rescue(p_limit integer)
RETURNS TABLE (id bigint, queue_name text, attempt integer, dead boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_errors text[];
BEGIN
    SELECT array_agg(e.id), array_agg(e.error)
    INTO v_ids, v_errors
    FROM (
        SELECT m.id,
               'lease expired: consumer ' || coalesce(m.locked_by, '?') ||
               ' neither finished nor extended its lease by ' || m.locked_until::text AS error
        FROM {{schema}}.pgflow_messages m
        WHERE m.status = 'processing' AND m.locked_until < now()
        ORDER BY m.locked_until
        LIMIT p_limit
        FOR UPDATE OF m SKIP LOCKED
    ) e;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM {{schema}}.pgflow_settle(v_ids, v_errors,
        array_fill(0::bigint, ARRAY[cardinality(v_ids)]), array_fill(false, ARRAY[cardinality(v_ids)]));
END
$$;

-- Heartbeat: extends the leases still held. Returns their ids.
CREATE FUNCTION {{schema}}.pgflow_extend(p_ids bigint[], p_tokens bigint[], p_lease_ms bigint)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    UPDATE {{schema}}.pgflow_messages m
    SET locked_until = clock_timestamp() + p_lease_ms * interval '1 millisecond'
    FROM unnest(p_ids, p_tokens) AS l(id, token)
    WHERE m.id = l.id AND m.claim_token = l.token
    RETURNING m.id;
END
$$;

-- Graceful stop: hands unfinished deliveries back, visible at once. Not a
-- failed attempt. Returns the ids released.
CREATE FUNCTION {{schema}}.pgflow_release(p_ids bigint[], p_tokens bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
BEGIN
    RETURN QUERY
    UPDATE {{schema}}.pgflow_messages m
    SET status = 'pending', locked_by = NULL, locked_until = NULL, claim_token = NULL, visible_at = now()
    FROM unnest(p_ids, p_tokens) AS l(id, token)
    WHERE m.id = l.id AND m.claim_token = l.token
    RETURNING m.id;
END
$$;

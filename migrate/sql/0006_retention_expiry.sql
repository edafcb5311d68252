-- pgflow schema, version 6: message expiry, dead-letter retention, and the
-- recovery of a restored database.
--
--   pgflow_settle   replaced: besides a failed delivery it buries an expired
--                   message (reason 'expired'); still the only place a live
--                   message moves to pgflow_dlq.
--   pgflow_claim    replaced: skips expired messages.
--   pgflow_expire   pending, expired -> DLQ (through pgflow_settle)
--   pgflow_dlq_trim deletes dead letters older than their queue's retention
--   pgflow_recover  releases every lease (through pgflow_release) and puts
--                   the id sequences past every id in use: run once after a
--                   restore, before consumers start.

-- Per-queue settings; 0 means off, and the column defaults are the only
-- defaults. bigint milliseconds: a retention of months does not fit in
-- integer milliseconds.
ALTER TABLE {{schema}}.pgflow_queues
    ADD COLUMN dlq_retention_ms bigint NOT NULL DEFAULT 0 CHECK (dlq_retention_ms >= 0),
    ADD COLUMN expiry_ms        bigint NOT NULL DEFAULT 0 CHECK (expiry_ms >= 0);

-- When a message that is not claimed by then goes to the DLQ instead of
-- being delivered late. NULL: never. Set at publish time (per message, or
-- the queue's expiry_ms after the message becomes visible) and never
-- changed, so a retry keeps its message's expiry.
ALTER TABLE {{schema}}.pgflow_messages ADD COLUMN expires_at timestamptz;

-- pgflow_expire's index: only pending messages that can expire, so messages
-- without an expiry cost no index entry here. Building it reads the whole
-- table while holding a SHARE lock: publishes, claims and acknowledgements
-- wait for it (a migration runs in a transaction, so it cannot be
-- CONCURRENTLY); with a large backlog, apply this version when the queues
-- are quiet.
CREATE INDEX pgflow_messages_expiry_idx
    ON {{schema}}.pgflow_messages (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;

-- Why a message was dead-lettered: 'failed' (a permanent error or no
-- retries left) or 'expired' (not claimed, or not retried, by its
-- expires_at). Rows written before version 6 are 'failed'.
ALTER TABLE {{schema}}.pgflow_dlq ADD COLUMN reason text NOT NULL DEFAULT 'failed';

-- Counters of the maintenance task: messages moved to the DLQ by their
-- expiry (also counted in dead_lettered) and dead letters deleted by the
-- queue's retention.
ALTER TABLE {{schema}}.pgflow_queue_stats
    ADD COLUMN expired     bigint NOT NULL DEFAULT 0,
    ADD COLUMN dlq_deleted bigint NOT NULL DEFAULT 0;

-- Version 4's body with expiry added (marked "version 6"). A processing
-- message settles as before, except that a retry that could not start
-- before the message's expires_at is not scheduled: the message is buried
-- at once with reason 'expired' and its handler's error kept in errors. A
-- pending message passed in (pgflow_expire) is buried with reason 'expired'
-- when it has expired, without counting a failed delivery; one that has not
-- expired is left alone and not returned.
CREATE OR REPLACE FUNCTION {{schema}}.pgflow_settle(p_ids bigint[], p_errors text[], p_delays_ms bigint[], p_permanent boolean[])
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
    ), judged AS (
        SELECT m.id, f.error, f.delay_ms,
               -- version 6: attempted (a delivery failed) and expired
               m.status = 'processing' AS attempted,
               (m.status = 'processing' AND (f.permanent OR m.retry_count + 1 > q.max_retries)) AS failed,
               coalesce(m.expires_at <= now() + f.delay_ms * interval '1 millisecond', false) AS expired
        FROM f
        JOIN {{schema}}.pgflow_messages m ON m.id = f.id
        JOIN {{schema}}.pgflow_queues q ON q.queue_name = m.queue_name
    ), target AS (
        SELECT j.*, (j.failed OR j.expired) AS dead FROM judged j
    ), gone AS (
        DELETE FROM {{schema}}.pgflow_messages m
        USING target t
        WHERE m.id = t.id AND t.dead
        RETURNING m.id, m.queue_name, m.payload, m.headers, m.priority, m.dedup_key, m.errors,
                  m.retry_count, m.attempt, m.created_at, m.expires_at, t.error AS last_error,
                  t.attempted, t.failed
    ), buried AS (
        INSERT INTO {{schema}}.pgflow_dlq
            (message_id, queue_name, payload, headers, priority, dedup_key, error, errors, retry_count, attempts,
             message_created_at, reason)
        SELECT g.id, g.queue_name, g.payload, g.headers, g.priority, g.dedup_key,
               -- version 6: the error and reason of an expired message
               CASE WHEN g.failed THEN g.last_error
                    WHEN g.attempted THEN 'expired: its retry could not start before ' || g.expires_at::text ||
                                          '; last error: ' || coalesce(g.last_error, '?')
                    ELSE 'expired: not claimed by ' || g.expires_at::text
               END,
               CASE WHEN g.attempted
                    THEN g.errors || jsonb_build_array(jsonb_build_object('attempt', g.attempt, 'error', g.last_error, 'at', now()))
                    ELSE g.errors
               END,
               g.retry_count + g.attempted::integer, g.attempt, g.created_at,
               CASE WHEN g.failed THEN 'failed' ELSE 'expired' END
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
        WHERE m.id = t.id AND NOT t.dead AND t.attempted -- version 6: AND t.attempted
        RETURNING m.id, m.queue_name, m.attempt
    )
    SELECT b.message_id, b.queue_name, b.attempts, true FROM buried b
    UNION ALL
    SELECT r.id, r.queue_name, r.attempt, false FROM retried r;
END
$$;

-- Version 4's body; the one change (marked "version 6") keeps expired
-- messages from being claimed. Such a message stays in the claim index
-- until pgflow_expire, run by every started client every few seconds,
-- moves it; a claim steps over it meanwhile.
CREATE OR REPLACE FUNCTION {{schema}}.pgflow_claim(p_queue text, p_limit integer, p_consumer text, p_lease_ms bigint,
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
              -- changed in version 6: an expired message is never delivered
              -- (pgflow_expire moves it to the DLQ).
              AND (m.expires_at IS NULL OR m.expires_at > now())
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
              -- changed in version 6: an expired message is never delivered
              -- (pgflow_expire moves it to the DLQ).
              AND (m.expires_at IS NULL OR m.expires_at > now())
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
              -- changed in version 6: an expired message is never delivered
              -- (pgflow_expire moves it to the DLQ).
              AND (m.expires_at IS NULL OR m.expires_at > now())
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

-- Moves up to p_limit pending messages whose expires_at has passed to the
-- DLQ (reason 'expired'), through pgflow_settle. Returns them as
-- pgflow_rescue does (dead always true).
CREATE FUNCTION {{schema}}.pgflow_expire(p_limit integer)
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
BEGIN
    SELECT array_agg(e.id)
    INTO v_ids
    FROM (
        SELECT m.id
        FROM {{schema}}.pgflow_messages m
        WHERE m.status = 'pending' AND m.expires_at IS NOT NULL AND m.expires_at <= now()
        ORDER BY m.expires_at
        LIMIT p_limit
        FOR UPDATE OF m SKIP LOCKED
    ) e;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM {{schema}}.pgflow_settle(v_ids,
        array_fill(NULL::text, ARRAY[cardinality(v_ids)]),
        array_fill(0::bigint, ARRAY[cardinality(v_ids)]),
        array_fill(false, ARRAY[cardinality(v_ids)]));
END
$$;

-- Deletes up to p_limit dead letters that are older than their queue's
-- dlq_retention_ms (queues with 0 keep theirs), oldest first per queue, and
-- returns how many it deleted per queue. Small batches keep each
-- transaction short; the caller repeats while a batch comes back full.
CREATE FUNCTION {{schema}}.pgflow_dlq_trim(p_limit integer)
RETURNS TABLE (queue_name text, deleted bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH doomed AS (
        SELECT d.id
        FROM {{schema}}.pgflow_queues q
        CROSS JOIN LATERAL (
            SELECT d.id
            FROM {{schema}}.pgflow_dlq d
            WHERE d.queue_name = q.queue_name
              AND d.created_at < now() - q.dlq_retention_ms * interval '1 millisecond'
            ORDER BY d.created_at
            LIMIT p_limit
        ) d
        WHERE q.dlq_retention_ms > 0
        LIMIT p_limit
    ), gone AS (
        DELETE FROM {{schema}}.pgflow_dlq d
        USING doomed
        WHERE d.id = doomed.id
        RETURNING d.queue_name
    )
    SELECT g.queue_name, count(*) FROM gone g GROUP BY g.queue_name;
END
$$;

-- After a restore (pg_restore, or a physical backup brought back to a point
-- in time): the leases of the backup belong to consumers that will never
-- acknowledge them. Hands every leased message back at once, as a graceful
-- stop does (pgflow_release: visible now, not a failed attempt), instead of
-- letting each wait for its old lease to run out and count a failure. Then
-- puts the id sequences past every id in use, in case the restore brought
-- back rows but not the sequences' state. Run it while no consumer of the
-- restored database is running: a running consumer's leases would be
-- released too (its deliveries would then be repeated, not lost). Returns
-- how many messages it released per queue. (A lease without a claim token,
-- written before version 4, is left to the lease rescuer.)
CREATE FUNCTION {{schema}}.pgflow_recover()
RETURNS TABLE (queue_name text, released bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_tokens bigint[];
    v_seq text;
    v_max bigint;
BEGIN
    SELECT array_agg(l.id), array_agg(l.claim_token)
    INTO v_ids, v_tokens
    FROM (
        SELECT m.id, m.claim_token
        FROM {{schema}}.pgflow_messages m
        WHERE m.status = 'processing'
        FOR UPDATE OF m
    ) l;

    v_seq := pg_get_serial_sequence('{{schema}}.pgflow_messages', 'id');
    SELECT greatest((SELECT max(m.id) FROM {{schema}}.pgflow_messages m),
                    (SELECT max(d.message_id) FROM {{schema}}.pgflow_dlq d),
                    pg_sequence_last_value(v_seq::regclass))
    INTO v_max;
    IF v_max IS NOT NULL THEN
        PERFORM setval(v_seq::regclass, v_max);
    END IF;
    v_seq := pg_get_serial_sequence('{{schema}}.pgflow_dlq', 'id');
    SELECT greatest((SELECT max(d.id) FROM {{schema}}.pgflow_dlq d), pg_sequence_last_value(v_seq::regclass))
    INTO v_max;
    IF v_max IS NOT NULL THEN
        PERFORM setval(v_seq::regclass, v_max);
    END IF;

    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT m.queue_name, count(*)
    FROM {{schema}}.pgflow_release(v_ids, v_tokens) AS r(id)
    JOIN {{schema}}.pgflow_messages m ON m.id = r.id
    GROUP BY m.queue_name;
END
$$;

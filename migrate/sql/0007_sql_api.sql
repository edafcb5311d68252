-- pgflow schema, version 7: the SQL API, for clients in any language, and
-- fan-out topics.
--
-- One function per operation, named and typed for a human at psql or a
-- client library (docs/sql.md):
--
--   pgflow_send, pgflow_send_batch      produce (as Client.Publish/PublishBatch)
--   pgflow_claim                        take up to n messages with a lease
--   pgflow_ack, pgflow_fail,            settle one delivery, guarded by the
--   pgflow_extend, pgflow_release       claim token
--
-- The consumer functions are thin wrappers of the engine's state functions
-- (migration 4: pgflow_claim, pgflow_ack, pgflow_fail/pgflow_settle,
-- pgflow_extend, pgflow_release), which stay the one home of each state
-- change; the wrappers add argument checks, the queue's backoff and the
-- notifications. They overload the engine's names with argument types no
-- call of the engine can match (the engine's take arrays, or a text consumer
-- in third place): every statement of the Go engine casts its parameters.
--
-- Bad input raises SQLSTATE 22023 (invalid_parameter_value) with a message
-- that names the argument; nothing is written.

-- Everything the functions below raise for bad input goes through here.
CREATE FUNCTION {{schema}}.pgflow_api_invalid(p_argument text, p_problem text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'pgflow: invalid %: %', p_argument, p_problem
        USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- The checks Go's Publish makes before writing (validate.go), for one
-- message; returns the headers to store ('{}' for NULL). The payload may be
-- any JSON value except SQL NULL; headers are an object of strings (the Go
-- consumer reads them as map[string]string).
CREATE FUNCTION {{schema}}.pgflow_api_check(p_queue text, p_payload jsonb, p_headers jsonb, p_priority integer,
                                            p_delay_ms bigint)
RETURNS jsonb
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_queue IS NULL OR p_queue !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$' THEN
        PERFORM {{schema}}.pgflow_api_invalid('queue', coalesce(quote_literal(p_queue), 'NULL') ||
            ': want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or ''_''');
    END IF;
    IF p_payload IS NULL THEN
        PERFORM {{schema}}.pgflow_api_invalid('payload', 'is NULL; send a JSON value (''null''::jsonb for JSON null)');
    END IF;
    IF p_priority IS NOT NULL AND (p_priority < -32768 OR p_priority > 32767) THEN
        PERFORM {{schema}}.pgflow_api_invalid('priority', p_priority || ' is outside [-32768, 32767]');
    END IF;
    IF p_delay_ms IS NULL OR p_delay_ms < 0 OR p_delay_ms > 9223372036854 THEN
        PERFORM {{schema}}.pgflow_api_invalid('delay_ms', coalesce(p_delay_ms::text, 'NULL') ||
            ': want 0 to 9223372036854 milliseconds');
    END IF;
    IF p_headers IS NULL THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof(p_headers) <> 'object' THEN
        PERFORM {{schema}}.pgflow_api_invalid('headers', 'want a JSON object of strings, got a JSON ' || jsonb_typeof(p_headers));
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each(p_headers) e WHERE e.key = '' OR jsonb_typeof(e.value) <> 'string') THEN
        PERFORM {{schema}}.pgflow_api_invalid('headers', 'want a JSON object of strings with non-empty names, got ' ||
            left(p_headers::text, 200));
    END IF;
    IF octet_length(p_headers::text) > 65536 THEN
        PERFORM {{schema}}.pgflow_api_invalid('headers', 'are ' || octet_length(p_headers::text) ||
            ' bytes, over the limit of 65536');
    END IF;
    RETURN p_headers;
END
$$;

-- The queue's row, created with the columns' defaults when missing (as Go's
-- Publish and Consume do unless Config.StrictQueues).
CREATE FUNCTION {{schema}}.pgflow_api_queue(p_queue text)
RETURNS {{schema}}.pgflow_queues
LANGUAGE plpgsql
AS $$
DECLARE
    v_row {{schema}}.pgflow_queues;
BEGIN
    SELECT * INTO v_row FROM {{schema}}.pgflow_queues q WHERE q.queue_name = p_queue;
    IF NOT FOUND THEN
        -- ON CONFLICT waits for a concurrent creator, so the row is there after.
        INSERT INTO {{schema}}.pgflow_queues (queue_name) VALUES (p_queue) ON CONFLICT DO NOTHING;
        SELECT * INTO v_row FROM {{schema}}.pgflow_queues q WHERE q.queue_name = p_queue;
    END IF;
    RETURN v_row;
END
$$;

-- The NOTIFY channel of this schema's consumers ("pgflow.<schema>"), whose
-- payload is the queue name: Go consumers listening there claim at once.
CREATE FUNCTION {{schema}}.pgflow_api_notify(p_queue text)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pg_notify('pgflow.' || btrim('{{schema}}', '"'), p_queue);
$$;

-- Sends one message and returns its id. With a dedup key that a live
-- (queued or in-flight) message of the queue holds, writes nothing and
-- returns that message's id, as Publish with WithDedupKey does.
CREATE FUNCTION {{schema}}.pgflow_send(queue text, payload jsonb, headers jsonb DEFAULT '{}',
                                       priority integer DEFAULT NULL, delay_ms bigint DEFAULT 0,
                                       dedup_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_queue text := pgflow_send.queue;
    v_key text := pgflow_send.dedup_key;
    v_headers jsonb;
    v_prio smallint;
    v_id bigint;
BEGIN
    v_headers := {{schema}}.pgflow_api_check(v_queue, pgflow_send.payload, pgflow_send.headers,
                                              pgflow_send.priority, pgflow_send.delay_ms);
    IF v_key IS NOT NULL AND (v_key = '' OR octet_length(v_key) > 512) THEN
        PERFORM {{schema}}.pgflow_api_invalid('dedup_key', 'must be 1-512 bytes');
    END IF;
    v_prio := coalesce(pgflow_send.priority, ({{schema}}.pgflow_api_queue(v_queue)).priority);
    IF v_key IS NULL THEN
        INSERT INTO {{schema}}.pgflow_messages (queue_name, payload, headers, priority, visible_at)
        VALUES (v_queue, pgflow_send.payload, v_headers, v_prio,
                now() + pgflow_send.delay_ms * interval '1 millisecond')
        RETURNING id INTO v_id;
        PERFORM {{schema}}.pgflow_api_notify(v_queue);
        RETURN v_id;
    END IF;
    -- The holder of the key may be acknowledged between the insert and the
    -- lookup: try a few times, as Publish does.
    FOR i IN 1..3 LOOP
        INSERT INTO {{schema}}.pgflow_messages (queue_name, payload, headers, priority, visible_at, dedup_key)
        VALUES (v_queue, pgflow_send.payload, v_headers, v_prio,
                now() + pgflow_send.delay_ms * interval '1 millisecond', v_key)
        ON CONFLICT (queue_name, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
        RETURNING id INTO v_id;
        IF FOUND THEN
            PERFORM {{schema}}.pgflow_api_notify(v_queue);
            RETURN v_id;
        END IF;
        SELECT m.id INTO v_id FROM {{schema}}.pgflow_messages m
        WHERE m.queue_name = v_queue AND m.dedup_key = v_key;
        IF FOUND THEN
            RETURN v_id;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'pgflow: send to %: dedup key % kept changing hands; try again', v_queue, quote_literal(v_key)
        USING ERRCODE = 'serialization_failure';
END
$$;

-- Sends many messages to one queue, all or none, and returns their ids in
-- input order. headers, when given, pairs with payloads element by element
-- (a NULL element: no headers). No dedup keys: pgflow_send has them.
CREATE FUNCTION {{schema}}.pgflow_send_batch(queue text, payloads jsonb[], headers jsonb[] DEFAULT NULL,
                                             priority integer DEFAULT NULL, delay_ms bigint DEFAULT 0)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_queue text := pgflow_send_batch.queue;
    v_payloads jsonb[] := pgflow_send_batch.payloads;
    v_headers jsonb[] := pgflow_send_batch.headers;
    v_n integer;
    v_prio smallint;
BEGIN
    IF v_payloads IS NULL THEN
        PERFORM {{schema}}.pgflow_api_invalid('payloads', 'is NULL; send an array of JSON values');
    END IF;
    IF array_ndims(v_payloads) > 1 OR array_ndims(v_headers) > 1 THEN
        PERFORM {{schema}}.pgflow_api_invalid('payloads', 'want one-dimensional arrays');
    END IF;
    v_n := cardinality(v_payloads);
    IF v_headers IS NOT NULL AND cardinality(v_headers) <> v_n THEN
        PERFORM {{schema}}.pgflow_api_invalid('headers', cardinality(v_headers) || ' elements for ' || v_n || ' payloads');
    END IF;
    -- Message 1 checks the queue, priority and delay as well.
    PERFORM {{schema}}.pgflow_api_check(v_queue, '{}'::jsonb, NULL, pgflow_send_batch.priority, pgflow_send_batch.delay_ms);
    FOR i IN 1..v_n LOOP
        BEGIN
            v_headers[i] := {{schema}}.pgflow_api_check(v_queue, v_payloads[i], v_headers[i], NULL, 0);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE EXCEPTION 'pgflow: message % of the batch: %', i, regexp_replace(SQLERRM, '^pgflow: ', '') USING ERRCODE = 'invalid_parameter_value';
        END;
    END LOOP;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    v_prio := coalesce(pgflow_send_batch.priority, ({{schema}}.pgflow_api_queue(v_queue)).priority);
    -- Identity values are drawn in insertion order, which is input order.
    RETURN QUERY
    WITH ins AS (
        INSERT INTO {{schema}}.pgflow_messages (queue_name, payload, headers, priority, visible_at)
        SELECT v_queue, i.payload, i.headers, v_prio, now() + pgflow_send_batch.delay_ms * interval '1 millisecond'
        FROM unnest(v_payloads, v_headers) WITH ORDINALITY AS i(payload, headers, ord)
        ORDER BY i.ord
        RETURNING id
    )
    SELECT ins.id FROM ins ORDER BY ins.id;
    PERFORM {{schema}}.pgflow_api_notify(v_queue);
END
$$;

-- Claims up to n messages of queue for consumer, leased for lease_ms (NULL:
-- the queue's lease), in claim order: priority descending, then visible_at,
-- then id. Nothing while the queue is paused. The engine's pgflow_claim does
-- the work; its asynchronous commit applies: call this in a transaction of
-- its own (autocommit), as a claim lost in a server crash only delivers its
-- messages again.
CREATE FUNCTION {{schema}}.pgflow_claim(queue text, n integer, lease_ms integer, consumer text)
RETURNS TABLE (id bigint, claim_token bigint, payload jsonb, headers jsonb, priority integer, attempt integer,
               retry_count integer, max_retries integer, created_at timestamptz, locked_until timestamptz)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_queue text := pgflow_claim.queue;
    v_row {{schema}}.pgflow_queues;
BEGIN
    IF v_queue IS NULL OR v_queue !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$' THEN
        PERFORM {{schema}}.pgflow_api_invalid('queue', coalesce(quote_literal(v_queue), 'NULL') ||
            ': want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or ''_''');
    END IF;
    IF pgflow_claim.n IS NULL OR pgflow_claim.n < 1 THEN
        PERFORM {{schema}}.pgflow_api_invalid('n', coalesce(pgflow_claim.n::text, 'NULL') || ': want at least 1');
    END IF;
    IF pgflow_claim.lease_ms IS NOT NULL AND pgflow_claim.lease_ms < 1 THEN
        PERFORM {{schema}}.pgflow_api_invalid('lease_ms', pgflow_claim.lease_ms || ': want at least 1 (NULL: the queue''s lease)');
    END IF;
    IF pgflow_claim.consumer IS NULL OR pgflow_claim.consumer = '' OR length(pgflow_claim.consumer) > 256 THEN
        PERFORM {{schema}}.pgflow_api_invalid('consumer', 'want 1-256 characters naming the claiming process');
    END IF;
    v_row := {{schema}}.pgflow_api_queue(v_queue);
    RETURN QUERY
    SELECT c.id, c.claim_token, c.payload, c.headers, c.priority::integer, c.attempt, c.retry_count,
           v_row.max_retries, c.created_at, c.locked_until
    FROM {{schema}}.pgflow_claim(v_queue, pgflow_claim.n, pgflow_claim.consumer,
                                 coalesce(pgflow_claim.lease_ms, v_row.lease_ms)::bigint) c
    WHERE c.id IS NOT NULL
    ORDER BY c.priority DESC, c.visible_at, c.id;
END
$$;

-- Handler succeeded: deletes the message. False when token no longer holds
-- it (the lease ran out and it was rescued, or it was handed back). Commits
-- with the caller's transaction as that transaction commits (synchronously
-- by default); the engine's pgflow_ack(bigint[], bigint[], boolean)
-- acknowledges many at once.
CREATE FUNCTION {{schema}}.pgflow_ack(id bigint, token bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN {{schema}}.pgflow_ack(ARRAY[pgflow_ack.id], ARRAY[pgflow_ack.token], false) = 1;
END
$$;

-- Handler failed: 'retry' (pending again after retry_after_ms, or the
-- queue's backoff when NULL: retry_delay_ms · 2^(n-1) for the n-th retry,
-- capped at max_retry_delay_ms, drawn from [d/2, d] as the Go consumer
-- does), 'dead' (moved to pgflow_dlq with every attempt's error: permanent,
-- or out of retries), or NULL when token no longer holds the message. The
-- engine's pgflow_fail and pgflow_settle make the change.
CREATE FUNCTION {{schema}}.pgflow_fail(id bigint, token bigint, error text, retry_after_ms integer DEFAULT NULL,
                                       permanent boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_delay bigint := pgflow_fail.retry_after_ms;
    v_queue text;
    v_dead boolean;
BEGIN
    IF pgflow_fail.error IS NULL THEN
        PERFORM {{schema}}.pgflow_api_invalid('error', 'is NULL; say why the attempt failed');
    END IF;
    IF v_delay IS NOT NULL AND v_delay < 0 THEN
        PERFORM {{schema}}.pgflow_api_invalid('retry_after_ms', v_delay || ': want 0 or more (NULL: the queue''s backoff)');
    END IF;
    IF v_delay IS NULL THEN
        SELECT CASE WHEN d.d < 2 THEN d.d ELSE floor(d.d / 2) + floor(random() * (d.d - floor(d.d / 2) + 1)) END
        INTO v_delay
        FROM {{schema}}.pgflow_messages m
        JOIN {{schema}}.pgflow_queues q ON q.queue_name = m.queue_name
        CROSS JOIN LATERAL (
            SELECT CASE WHEN q.max_retry_delay_ms > 0
                        THEN least(q.retry_delay_ms * power(2::numeric, least(m.retry_count, 62)), q.max_retry_delay_ms)
                        ELSE q.retry_delay_ms * power(2::numeric, least(m.retry_count, 62))
                   END AS d
        ) d
        WHERE m.id = pgflow_fail.id AND m.claim_token = pgflow_fail.token;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT f.queue_name, f.dead INTO v_queue, v_dead
    FROM {{schema}}.pgflow_fail(ARRAY[pgflow_fail.id], ARRAY[pgflow_fail.token], ARRAY[pgflow_fail.error],
                                ARRAY[v_delay], ARRAY[coalesce(pgflow_fail.permanent, false)]) f;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_dead THEN
        RETURN 'dead';
    END IF;
    -- Idle consumers re-read when the retry is due (as after a Go retry).
    PERFORM {{schema}}.pgflow_api_notify(v_queue);
    RETURN 'retry';
END
$$;

-- Heartbeat: the lease now ends lease_ms from now (NULL: the queue's
-- lease). False when token no longer holds the message.
CREATE FUNCTION {{schema}}.pgflow_extend(id bigint, token bigint, lease_ms integer)
RETURNS boolean
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_lease bigint := pgflow_extend.lease_ms;
BEGIN
    IF v_lease IS NOT NULL AND v_lease < 1 THEN
        PERFORM {{schema}}.pgflow_api_invalid('lease_ms', v_lease || ': want at least 1 (NULL: the queue''s lease)');
    END IF;
    IF v_lease IS NULL THEN
        SELECT q.lease_ms INTO v_lease
        FROM {{schema}}.pgflow_messages m
        JOIN {{schema}}.pgflow_queues q ON q.queue_name = m.queue_name
        WHERE m.id = pgflow_extend.id AND m.claim_token = pgflow_extend.token;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    RETURN EXISTS (SELECT 1 FROM {{schema}}.pgflow_extend(ARRAY[pgflow_extend.id], ARRAY[pgflow_extend.token], v_lease));
END
$$;

-- Hands the message back, visible at once; not a failed attempt (the
-- delivery count, attempt, still rises at the next claim). False when token
-- no longer holds it.
CREATE FUNCTION {{schema}}.pgflow_release(id bigint, token bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_queue text;
BEGIN
    SELECT m.queue_name INTO v_queue FROM {{schema}}.pgflow_messages m
    WHERE m.id = pgflow_release.id AND m.claim_token = pgflow_release.token;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_release(ARRAY[pgflow_release.id], ARRAY[pgflow_release.token])) THEN
        RETURN false;
    END IF;
    PERFORM {{schema}}.pgflow_api_notify(v_queue);
    RETURN true;
END
$$;

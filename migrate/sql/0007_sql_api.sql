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
    v_row {{schema}}.pgflow_queues;
    v_prio smallint;
    v_id bigint;
BEGIN
    v_headers := {{schema}}.pgflow_api_check(v_queue, pgflow_send.payload, pgflow_send.headers,
                                              pgflow_send.priority, pgflow_send.delay_ms);
    IF v_key IS NOT NULL AND (v_key = '' OR octet_length(v_key) > 512) THEN
        PERFORM {{schema}}.pgflow_api_invalid('dedup_key', 'must be 1-512 bytes');
    END IF;
    -- Creates the queue's row when missing, whether or not a priority is given.
    v_row := {{schema}}.pgflow_api_queue(v_queue);
    v_prio := coalesce(pgflow_send.priority, v_row.priority);
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
    v_row {{schema}}.pgflow_queues;
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
    -- Creates the queue's row when missing, whether or not a priority is given.
    v_row := {{schema}}.pgflow_api_queue(v_queue);
    v_prio := coalesce(pgflow_send_batch.priority, v_row.priority);
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

-- Fan-out topics: a topic is a name that queues subscribe to; publishing to
-- it writes one message per subscribed queue, each then with its own
-- retries and DLQ. A queue's subscriptions go with it.
CREATE TABLE {{schema}}.pgflow_topic_subscriptions (
    topic      text        NOT NULL,
    queue_name text        NOT NULL REFERENCES {{schema}}.pgflow_queues (queue_name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, queue_name)
);

CREATE INDEX pgflow_topic_subscriptions_queue_idx ON {{schema}}.pgflow_topic_subscriptions (queue_name);

-- Queue and topic names have one form (Go's QueueNamePattern).
CREATE FUNCTION {{schema}}.pgflow_api_check_name(p_argument text, p_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF p_name IS NULL OR p_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$' THEN
        PERFORM {{schema}}.pgflow_api_invalid(p_argument, coalesce(quote_literal(p_name), 'NULL') ||
            ': want 1-128 characters of [A-Za-z0-9_.:-], starting with a letter, digit or ''_''');
    END IF;
END
$$;

-- Subscribes queue (created if missing) to topic. True when the
-- subscription is new.
CREATE FUNCTION {{schema}}.pgflow_subscribe(topic text, queue text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM {{schema}}.pgflow_api_check_name('topic', pgflow_subscribe.topic);
    PERFORM {{schema}}.pgflow_api_check_name('queue', pgflow_subscribe.queue);
    PERFORM {{schema}}.pgflow_api_queue(pgflow_subscribe.queue);
    INSERT INTO {{schema}}.pgflow_topic_subscriptions (topic, queue_name)
    VALUES (pgflow_subscribe.topic, pgflow_subscribe.queue)
    ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;

-- Ends a subscription. True when there was one. Messages already published
-- to the queue stay.
CREATE FUNCTION {{schema}}.pgflow_unsubscribe(topic text, queue text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM {{schema}}.pgflow_api_check_name('topic', pgflow_unsubscribe.topic);
    PERFORM {{schema}}.pgflow_api_check_name('queue', pgflow_unsubscribe.queue);
    DELETE FROM {{schema}}.pgflow_topic_subscriptions s
    WHERE s.topic = pgflow_unsubscribe.topic AND s.queue_name = pgflow_unsubscribe.queue;
    RETURN FOUND;
END
$$;

-- Publishes one message to every queue subscribed to topic, in one
-- statement (and so in the caller's transaction): all of them or none.
-- Returns each queue with its message's id, by queue name. Without a
-- subscriber it raises SQLSTATE PF001 unless allow_no_subscribers, which
-- returns no row instead. priority NULL: each queue's default; visible_at,
-- when given, wins over delay_ms (a time in the past means now).
CREATE FUNCTION {{schema}}.pgflow_publish(topic text, payload jsonb, headers jsonb DEFAULT '{}',
                                          priority integer DEFAULT NULL, delay_ms bigint DEFAULT 0,
                                          allow_no_subscribers boolean DEFAULT false,
                                          visible_at timestamptz DEFAULT NULL)
RETURNS TABLE (queue text, id bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_topic text := pgflow_publish.topic;
    v_headers jsonb;
    r record;
    v_n integer := 0;
BEGIN
    PERFORM {{schema}}.pgflow_api_check_name('topic', v_topic);
    -- The queue name checked here is a stand-in: subscribed queues are valid.
    v_headers := {{schema}}.pgflow_api_check('_', pgflow_publish.payload, pgflow_publish.headers,
                                              pgflow_publish.priority, pgflow_publish.delay_ms);
    FOR r IN
        WITH ins AS (
            INSERT INTO {{schema}}.pgflow_messages (queue_name, payload, headers, priority, visible_at)
            SELECT s.queue_name, pgflow_publish.payload, v_headers,
                   coalesce(pgflow_publish.priority::smallint, q.priority),
                   coalesce(pgflow_publish.visible_at, now() + pgflow_publish.delay_ms * interval '1 millisecond')
            FROM {{schema}}.pgflow_topic_subscriptions s
            JOIN {{schema}}.pgflow_queues q ON q.queue_name = s.queue_name
            WHERE s.topic = v_topic
            ORDER BY s.queue_name
            RETURNING queue_name, id
        )
        SELECT ins.queue_name, ins.id FROM ins ORDER BY ins.queue_name
    LOOP
        queue := r.queue_name;
        id := r.id;
        v_n := v_n + 1;
        RETURN NEXT;
        PERFORM {{schema}}.pgflow_api_notify(r.queue_name);
    END LOOP;
    IF v_n = 0 AND NOT coalesce(pgflow_publish.allow_no_subscribers, false) THEN
        RAISE EXCEPTION 'pgflow: topic % has no subscribers; nothing was published', quote_literal(v_topic)
            USING ERRCODE = 'PF001',
                  HINT = 'subscribe a queue with pgflow_subscribe(topic, queue), or pass allow_no_subscribers => true';
    END IF;
END
$$;

-- Admin. A queue that does not exist raises SQLSTATE 42704
-- (undefined_object).
CREATE FUNCTION {{schema}}.pgflow_api_queue_must_exist(p_queue text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'pgflow: queue % does not exist', quote_literal(p_queue) USING ERRCODE = 'undefined_object';
END
$$;

-- Stops claiming from queue on every consumer (Go and SQL). True when it
-- was running.
CREATE FUNCTION {{schema}}.pgflow_pause(queue text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_was boolean;
BEGIN
    PERFORM {{schema}}.pgflow_api_check_name('queue', pgflow_pause.queue);
    SELECT q.paused INTO v_was FROM {{schema}}.pgflow_queues q WHERE q.queue_name = pgflow_pause.queue FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM {{schema}}.pgflow_api_queue_must_exist(pgflow_pause.queue);
    END IF;
    UPDATE {{schema}}.pgflow_queues q SET paused = true, updated_at = now() WHERE q.queue_name = pgflow_pause.queue;
    RETURN NOT v_was;
END
$$;

-- Lets consumers claim from queue again and wakes them. True when it was
-- paused.
CREATE FUNCTION {{schema}}.pgflow_resume(queue text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_was boolean;
BEGIN
    PERFORM {{schema}}.pgflow_api_check_name('queue', pgflow_resume.queue);
    SELECT q.paused INTO v_was FROM {{schema}}.pgflow_queues q WHERE q.queue_name = pgflow_resume.queue FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM {{schema}}.pgflow_api_queue_must_exist(pgflow_resume.queue);
    END IF;
    UPDATE {{schema}}.pgflow_queues q SET paused = false, updated_at = now() WHERE q.queue_name = pgflow_resume.queue;
    PERFORM {{schema}}.pgflow_api_notify(pgflow_resume.queue);
    RETURN v_was;
END
$$;

-- One chunk of a DLQ redrive: the one home of moving a dead letter back,
-- called by Go's RedriveDLQ chunk by chunk and by pgflow_dlq_redrive.
-- Filters (NULL: none): p_ids, p_queue, dead-lettered in [p_from, p_to),
-- ILIKE p_error on the last error, p_priority; DLQ ids in (p_after,
-- p_upto], at most p_limit. Each picked row is deleted from pgflow_dlq and
-- inserted into pgflow_messages together, or neither: the message gets its
-- original id and created_at back, starts fresh (pending, visible now,
-- retry_count 0, attempt 0) and keeps its error history. A row is skipped,
-- and stays, when its id is live again (id_live), its dedup key is held by
-- a live message (dedup_key_live), or an older row of the chunk has the
-- same dedup key (dedup_key_duplicate). Returns every picked row with its
-- outcome (skip NULL: redriven). Run as a one-shot statement (EXECUTE), so
-- it is planned for the filters actually given.
CREATE FUNCTION {{schema}}.pgflow_dlq_redrive_chunk(p_ids bigint[], p_queue text, p_from timestamptz,
                                                    p_to timestamptz, p_error text, p_priority smallint,
                                                    p_limit integer, p_after bigint, p_upto bigint)
RETURNS TABLE (id bigint, message_id bigint, queue_name text, skip text)
LANGUAGE plpgsql
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN EXECUTE $q$
        WITH pick AS (
            SELECT d.id
            FROM {{schema}}.pgflow_dlq d
            WHERE ($1::bigint[] IS NULL OR d.id = ANY($1::bigint[]))
              AND ($2::text IS NULL OR d.queue_name = $2)
              AND ($3::timestamptz IS NULL OR d.created_at >= $3)
              AND ($4::timestamptz IS NULL OR d.created_at < $4)
              AND ($5::text IS NULL OR d.error ILIKE $5)
              AND ($6::smallint IS NULL OR d.priority = $6)
              AND d.id > $8::bigint AND d.id <= $9::bigint
            ORDER BY d.id
            LIMIT $7
            FOR UPDATE SKIP LOCKED
        ), cand AS (
            SELECT d.id, d.message_id, d.queue_name,
                   CASE
                       WHEN EXISTS (SELECT 1 FROM {{schema}}.pgflow_messages m WHERE m.id = d.message_id)
                           THEN 'id_live'
                       WHEN d.dedup_key IS NOT NULL AND EXISTS (
                                SELECT 1 FROM {{schema}}.pgflow_messages m
                                WHERE m.queue_name = d.queue_name AND m.dedup_key = d.dedup_key)
                           THEN 'dedup_key_live'
                       WHEN d.dedup_key IS NOT NULL
                            AND row_number() OVER (PARTITION BY d.queue_name, d.dedup_key ORDER BY d.id) > 1
                           THEN 'dedup_key_duplicate'
                   END AS skip
            FROM {{schema}}.pgflow_dlq d
            JOIN pick p ON p.id = d.id
        ), moved AS (
            DELETE FROM {{schema}}.pgflow_dlq d
            USING cand c
            WHERE d.id = c.id AND c.skip IS NULL
            RETURNING d.message_id, d.queue_name, d.payload, d.headers, d.priority, d.dedup_key,
                      d.errors, d.message_created_at
        ), ins AS (
            INSERT INTO {{schema}}.pgflow_messages
                (id, queue_name, payload, headers, priority, dedup_key, errors, created_at,
                 status, retry_count, attempt, visible_at)
            SELECT mv.message_id, mv.queue_name, mv.payload, mv.headers, mv.priority, mv.dedup_key,
                   mv.errors, mv.message_created_at, 'pending', 0, 0, now()
            FROM moved mv
            RETURNING queue_name
        ), woke AS (
            SELECT pg_notify('pgflow.' || btrim('{{schema}}', '"'), w.queue_name)
            FROM (SELECT DISTINCT queue_name FROM ins) w
        )
        SELECT c.id, c.message_id, c.queue_name, c.skip, (SELECT count(*) FROM woke) AS notified
        FROM cand c
        ORDER BY c.id
    $q$ USING p_ids, p_queue, p_from, p_to, p_error, p_priority, p_limit, p_after, p_upto
    LOOP
        id := r.id;
        message_id := r.message_id;
        queue_name := r.queue_name;
        skip := r.skip;
        RETURN NEXT;
    END LOOP;
END
$$;

-- One chunk of a DLQ purge (filters and bounds as pgflow_dlq_redrive_chunk):
-- the one home of deleting dead letters. Returns the deleted rows' id and
-- queue.
CREATE FUNCTION {{schema}}.pgflow_dlq_purge_chunk(p_ids bigint[], p_queue text, p_from timestamptz,
                                                  p_to timestamptz, p_error text, p_priority smallint,
                                                  p_limit integer, p_after bigint, p_upto bigint)
RETURNS TABLE (id bigint, queue_name text)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
        WITH pick AS (
            SELECT d.id
            FROM {{schema}}.pgflow_dlq d
            WHERE ($1::bigint[] IS NULL OR d.id = ANY($1::bigint[]))
              AND ($2::text IS NULL OR d.queue_name = $2)
              AND ($3::timestamptz IS NULL OR d.created_at >= $3)
              AND ($4::timestamptz IS NULL OR d.created_at < $4)
              AND ($5::text IS NULL OR d.error ILIKE $5)
              AND ($6::smallint IS NULL OR d.priority = $6)
              AND d.id > $8::bigint AND d.id <= $9::bigint
            ORDER BY d.id
            LIMIT $7
            FOR UPDATE SKIP LOCKED
        )
        DELETE FROM {{schema}}.pgflow_dlq d
        USING pick p
        WHERE d.id = p.id
        RETURNING d.id, d.queue_name
    $q$ USING p_ids, p_queue, p_from, p_to, p_error, p_priority, p_limit, p_after, p_upto;
END
$$;

-- Moves dead letters of queue (all of them, or those of ids) back to it,
-- in chunks of 1,000 committed with the caller's transaction. Only rows in
-- the DLQ when the call starts are considered. queue NULL with ids: those
-- ids from any queue. Returns how many moved; rows skipped (see
-- pgflow_dlq_redrive_chunk) stay in the DLQ.
CREATE FUNCTION {{schema}}.pgflow_dlq_redrive(queue text, ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_upto bigint;
    v_after bigint := 0;
    v_n integer := 0;
    v_moved integer;
    v_got integer;
    v_max bigint;
BEGIN
    IF pgflow_dlq_redrive.queue IS NULL AND pgflow_dlq_redrive.ids IS NULL THEN
        PERFORM {{schema}}.pgflow_api_invalid('queue', 'is NULL and so are ids; name a queue or the DLQ ids to redrive');
    END IF;
    IF pgflow_dlq_redrive.queue IS NOT NULL THEN
        PERFORM {{schema}}.pgflow_api_check_name('queue', pgflow_dlq_redrive.queue);
    END IF;
    SELECT coalesce(max(d.id), 0) INTO v_upto FROM {{schema}}.pgflow_dlq d;
    LOOP
        -- A publish committing the same dedup key between the chunk's
        -- check and its insert fails the chunk as a whole (nothing moved);
        -- the next try sees the key and skips the message.
        FOR v_try IN 1..4 LOOP
            BEGIN
                SELECT count(*) FILTER (WHERE c.skip IS NULL), count(*), max(c.id) INTO v_moved, v_got, v_max
                FROM {{schema}}.pgflow_dlq_redrive_chunk(pgflow_dlq_redrive.ids, pgflow_dlq_redrive.queue,
                         NULL, NULL, NULL, NULL, 1000, v_after, v_upto) c;
                EXIT;
            EXCEPTION WHEN unique_violation THEN
                IF v_try = 4 THEN
                    RAISE;
                END IF;
            END;
        END LOOP;
        v_n := v_n + v_moved;
        EXIT WHEN v_got < 1000;
        v_after := v_max;
    END LOOP;
    RETURN v_n;
END
$$;

-- Deletes dead letters of queue (all of them, or those of ids) for good, in
-- chunks as pgflow_dlq_redrive. queue NULL with ids: those ids from any
-- queue. Returns how many were deleted.
CREATE FUNCTION {{schema}}.pgflow_dlq_purge(queue text, ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_upto bigint;
    v_after bigint := 0;
    v_n integer := 0;
    v_got integer;
    v_max bigint;
BEGIN
    IF pgflow_dlq_purge.queue IS NULL AND pgflow_dlq_purge.ids IS NULL THEN
        PERFORM {{schema}}.pgflow_api_invalid('queue', 'is NULL and so are ids; name a queue or the DLQ ids to purge');
    END IF;
    IF pgflow_dlq_purge.queue IS NOT NULL THEN
        PERFORM {{schema}}.pgflow_api_check_name('queue', pgflow_dlq_purge.queue);
    END IF;
    SELECT coalesce(max(d.id), 0) INTO v_upto FROM {{schema}}.pgflow_dlq d;
    LOOP
        SELECT count(*), max(c.id) INTO v_got, v_max
        FROM {{schema}}.pgflow_dlq_purge_chunk(pgflow_dlq_purge.ids, pgflow_dlq_purge.queue,
                 NULL, NULL, NULL, NULL, 1000, v_after, v_upto) c;
        v_n := v_n + v_got;
        EXIT WHEN v_got < 1000;
        v_after := v_max;
    END LOOP;
    RETURN v_n;
END
$$;

-- Queue statistics: the live part (one row per queue in pgflow_queues, by
-- state) and the dead-letter part, one function each, so the Go client runs
-- them on two connections at once and pgflow_queue_stats joins them. Each
-- statement is a one-shot EXECUTE, planned for the queue actually given.
--
-- $1 queue (NULL: every queue). One row per queue in pgflow_queues: the
-- counts of its live messages by state (ready: pending and visible now;
-- delayed: pending, visible later, never failed; retrying: pending, backing
-- off after a failure), the oldest ready message's age, the consumers holding
-- leases and the per-minute counters of the last hour. The dead-letter part
-- is QueueDLQStats, read on another connection at the same time: with a
-- large queue and a large DLQ the two index scans then take max(a, b)
-- instead of a + b.
-- The pending part evaluates one filter per row instead of three (ready is
-- total - later; the smallest visible_at is the oldest ready one when it
-- is not in the future): a third less time over a million rows.
CREATE FUNCTION {{schema}}.pgflow_queue_stats_live(p_queue text)
RETURNS TABLE (queue text, paused boolean, max_retries integer, ready bigint, delayed bigint, retrying bigint,
               in_flight bigint, oldest_ready_s float8, consumers text[],
               handled_1m bigint, failed_1m bigint, dead_lettered_1m bigint,
               handled_5m bigint, failed_5m bigint, dead_lettered_5m bigint,
               handled_1h bigint, failed_1h bigint, dead_lettered_1h bigint, at timestamptz)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
        WITH pend AS (
            SELECT m.queue_name,
                   count(*) AS total,
                   count(*) FILTER (WHERE m.visible_at > now()) AS later,
                   min(m.visible_at) AS oldest
            FROM {{schema}}.pgflow_messages m
            WHERE m.status = 'pending' AND ($1::text IS NULL OR m.queue_name = $1)
            GROUP BY m.queue_name
        ), retrying AS (
            SELECT m.queue_name, count(*) AS n
            FROM {{schema}}.pgflow_messages m
            WHERE m.status = 'pending' AND m.visible_at > now() AND m.retry_count > 0
              AND ($1::text IS NULL OR m.queue_name = $1)
            GROUP BY m.queue_name
        ), leased AS (
            SELECT m.queue_name, count(*) AS n,
                   array_agg(DISTINCT m.locked_by) FILTER (WHERE m.locked_by IS NOT NULL) AS consumers
            FROM {{schema}}.pgflow_messages m
            WHERE m.status = 'processing' AND ($1::text IS NULL OR m.queue_name = $1)
            GROUP BY m.queue_name
        ), win AS (
            SELECT s.queue_name,
                   sum(s.handled)       FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '1 minute')  AS handled_1m,
                   sum(s.failed)        FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '1 minute')  AS failed_1m,
                   sum(s.dead_lettered) FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '1 minute')  AS dead_1m,
                   sum(s.handled)       FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '5 minutes') AS handled_5m,
                   sum(s.failed)        FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '5 minutes') AS failed_5m,
                   sum(s.dead_lettered) FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '5 minutes') AS dead_5m,
                   sum(s.handled)  AS handled_1h,
                   sum(s.failed)   AS failed_1h,
                   sum(s.dead_lettered) AS dead_1h
            FROM {{schema}}.pgflow_queue_stats s
            WHERE ($1::text IS NULL OR s.queue_name = $1)
              AND s.bucket >= date_trunc('minute', now()) - interval '1 hour'
            GROUP BY s.queue_name
        )
        SELECT q.queue_name, q.paused, q.max_retries,
               coalesce(p.total - p.later, 0), coalesce(p.later, 0) - coalesce(r.n, 0), coalesce(r.n, 0), coalesce(l.n, 0),
               CASE WHEN p.oldest <= now() THEN extract(epoch FROM now() - p.oldest) ELSE 0 END::float8 AS oldest_ready_s,
               coalesce(l.consumers, '{}'),
               coalesce(w.handled_1m, 0)::bigint, coalesce(w.failed_1m, 0)::bigint, coalesce(w.dead_1m, 0)::bigint,
               coalesce(w.handled_5m, 0)::bigint, coalesce(w.failed_5m, 0)::bigint, coalesce(w.dead_5m, 0)::bigint,
               coalesce(w.handled_1h, 0)::bigint, coalesce(w.failed_1h, 0)::bigint, coalesce(w.dead_1h, 0)::bigint,
               now()
        FROM {{schema}}.pgflow_queues q
        LEFT JOIN pend p ON p.queue_name = q.queue_name
        LEFT JOIN retrying r ON r.queue_name = q.queue_name
        LEFT JOIN leased l ON l.queue_name = q.queue_name
        LEFT JOIN win w ON w.queue_name = q.queue_name
        WHERE ($1::text IS NULL OR q.queue_name = $1)
        ORDER BY q.queue_name
    $q$ USING p_queue;
END
$$;

-- Each queue's dead-letter count and newest dead-lettering time, in one
-- index-only scan of pgflow_dlq_queue_created_idx. $1 queue or NULL.
CREATE FUNCTION {{schema}}.pgflow_queue_stats_dlq(p_queue text)
RETURNS TABLE (queue text, dead_letters bigint, last_dead_lettered_at timestamptz)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
        SELECT d.queue_name, count(*), max(d.created_at)
        FROM {{schema}}.pgflow_dlq d
        WHERE ($1::text IS NULL OR d.queue_name = $1)
        GROUP BY d.queue_name
    $q$ USING p_queue;
END
$$;

-- Every queue's counts (or queue's): Go's QueueStats as one row per queue.
-- ready, delayed (published with a delay), retrying (backing off) and
-- in_flight (leased) messages; the oldest ready message's age; the
-- consumers holding leases; handled, failed and dead-lettered deliveries
-- over the last 1 min, 5 min and 1 h (as counted by Go clients: the SQL
-- API's acknowledgements are not counted); the DLQ size and newest
-- dead-lettering. Index scans over sequential ones and no parallel workers,
-- as the Go client reads them.
CREATE FUNCTION {{schema}}.pgflow_queue_stats(queue text DEFAULT NULL)
RETURNS TABLE (queue_name text, paused boolean, max_retries integer, ready bigint, delayed bigint, retrying bigint,
               in_flight bigint, oldest_ready_s float8, consumers text[],
               handled_1m bigint, failed_1m bigint, dead_lettered_1m bigint,
               handled_5m bigint, failed_5m bigint, dead_lettered_5m bigint,
               handled_1h bigint, failed_1h bigint, dead_lettered_1h bigint,
               dead_letters bigint, last_dead_lettered_at timestamptz, at timestamptz)
LANGUAGE plpgsql
SET enable_seqscan = off
SET max_parallel_workers_per_gather = 0
AS $$
BEGIN
    IF pgflow_queue_stats.queue IS NOT NULL THEN
        PERFORM {{schema}}.pgflow_api_check_name('queue', pgflow_queue_stats.queue);
    END IF;
    RETURN QUERY
    SELECT l.queue, l.paused, l.max_retries, l.ready, l.delayed, l.retrying, l.in_flight, l.oldest_ready_s,
           l.consumers, l.handled_1m, l.failed_1m, l.dead_lettered_1m, l.handled_5m, l.failed_5m,
           l.dead_lettered_5m, l.handled_1h, l.failed_1h, l.dead_lettered_1h,
           coalesce(d.dead_letters, 0), d.last_dead_lettered_at, l.at
    FROM {{schema}}.pgflow_queue_stats_live(pgflow_queue_stats.queue) l
    LEFT JOIN {{schema}}.pgflow_queue_stats_dlq(pgflow_queue_stats.queue) d ON d.queue = l.queue
    ORDER BY l.queue;
END
$$;

-- pgflow schema, version 5: a consumer that is gone (killed, out of memory,
-- its host lost) gives its messages back within about a second and a half,
-- not at the end of their lease.
--
-- Every started client that consumes registers one row here and keeps it
-- alive two ways: its heartbeat (seen_at, refreshed through the pool every
-- quarter of expiry_ms or more often) and, on direct connections, a session
-- advisory lock on lock_key that a dedicated connection of its own holds
-- (the listener's). PostgreSQL drops the lock the moment that session ends,
-- which for a killed process is as soon as the kernel closes its socket.
-- A registration is gone when its heartbeat is older than expiry_ms and its
-- lock, if it has one, is no longer held: the lock keeps a live client whose
-- heartbeats are late (a starved pool, a long pause) from being taken for
-- dead, and the heartbeat keeps a live client whose session is reconnecting
-- from losing its messages. Where sessions are not stable (a transaction
-- pooler), lock_key is NULL and the heartbeat alone decides, with a longer
-- expiry_ms.
CREATE TABLE {{schema}}.pgflow_consumers (
    id         bigint      PRIMARY KEY, -- random, one per Start of a client
    consumer   text        NOT NULL,    -- the client's id, as in pgflow_messages.locked_by
    lock_key   bigint,                  -- pg_advisory_lock(lock_key) held by its session; NULL: none
    expiry_ms  integer     NOT NULL CHECK (expiry_ms > 0),
    started_at timestamptz NOT NULL DEFAULT now(),
    up_since   timestamptz NOT NULL DEFAULT now(), -- heartbeats without a gap longer than 2 * expiry_ms since
    seen_at    timestamptz NOT NULL DEFAULT now()  -- last heartbeat
);

CREATE INDEX pgflow_consumers_consumer_idx ON {{schema}}.pgflow_consumers (consumer);

-- Messages held by consumers that are gone: each counts as a failed attempt,
-- retried at once or dead-lettered (pgflow_settle), exactly as an expired
-- lease does in pgflow_rescue. At most p_limit messages per call; a gone
-- registration is deleted once none of its consumer's messages is left.
--
-- A consumer id shared by several clients (Config.ID set to one value) is
-- gone only when all its registrations are: messages carry the id, not the
-- registration.
--
-- p_judge is the calling client's own registration. Judging is skipped
-- unless the caller itself has heartbeated without a gap (of over twice its
-- expiry: shorter ones are a loaded machine's late heartbeats) for 3 s, up
-- to now, and the server has been up for 3 s: after a restart, a failover
-- or a network cut every session is new and every heartbeat old, and the
-- consumers that are alive must first have had time to come back. One judge at a time per
-- schema (a transaction advisory lock): a second caller returns nothing.
CREATE FUNCTION {{schema}}.pgflow_rescue_dead(p_judge bigint, p_limit integer)
RETURNS TABLE (id bigint, queue_name text, attempt integer, dead boolean, consumer text)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
DECLARE
    v_gone bigint[];     -- registrations that are gone
    v_consumers text[];  -- consumer ids with no registration left alive
    v_ids bigint[];
    v_errors text[];
    v_holders text[];
BEGIN
    -- The common case, every registration fresh, reads the few rows of
    -- pgflow_consumers and nothing else; pg_locks is read only for
    -- registrations whose heartbeat is late.
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_consumers j
                   WHERE j.id = p_judge
                     AND j.up_since <= now() - interval '3 seconds'
                     AND j.seen_at >= now() - j.expiry_ms * interval '2 milliseconds')
       OR pg_postmaster_start_time() > now() - interval '3 seconds' THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_consumers c
                   WHERE c.seen_at < now() - c.expiry_ms * interval '1 millisecond') THEN
        RETURN;
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtextextended('pgflow_rescue_dead {{schema}}', 0)) THEN
        RETURN;
    END IF;
    WITH held AS MATERIALIZED (
        -- pg_advisory_lock(bigint) shows its key as classid (high half) and
        -- objid (low half), objsubid 1.
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS lock_key
        FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
          AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
    )
    SELECT array_agg(c.id) INTO v_gone
    FROM {{schema}}.pgflow_consumers c
    WHERE c.seen_at < now() - c.expiry_ms * interval '1 millisecond'
      AND (c.lock_key IS NULL OR NOT EXISTS (SELECT 1 FROM held h WHERE h.lock_key = c.lock_key));
    IF v_gone IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT c.consumer) INTO v_consumers
    FROM {{schema}}.pgflow_consumers c
    WHERE c.id = ANY (v_gone)
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_consumers o
                      WHERE o.consumer = c.consumer AND NOT (o.id = ANY (v_gone)));
    IF v_consumers IS NOT NULL THEN
        SELECT array_agg(e.id), array_agg(e.error), array_agg(e.holder)
        INTO v_ids, v_errors, v_holders
        FROM (
            SELECT m.id, m.locked_by AS holder,
                   'lease expired early: consumer ' || m.locked_by ||
                   ' is gone (its database session ended and its heartbeat stopped)' AS error
            FROM {{schema}}.pgflow_messages m
            WHERE m.status = 'processing' AND m.locked_by = ANY (v_consumers)
            LIMIT p_limit
            FOR UPDATE OF m SKIP LOCKED
        ) e;
        IF v_ids IS NOT NULL THEN
            RETURN QUERY
            SELECT s.id, s.queue_name, s.attempt, s.dead, h.holder
            FROM {{schema}}.pgflow_settle(v_ids, v_errors,
                    array_fill(0::bigint, ARRAY[cardinality(v_ids)]), array_fill(false, ARRAY[cardinality(v_ids)])) s
            JOIN unnest(v_ids, v_holders) AS h(id, holder) ON h.id = s.id;
        END IF;
    END IF;
    -- A registration goes once its consumer holds nothing more (or another
    -- registration of the same id is alive and keeps its messages).
    DELETE FROM {{schema}}.pgflow_consumers c
    WHERE c.id = ANY (v_gone)
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.pgflow_messages m
                      WHERE m.status = 'processing' AND m.locked_by = c.consumer
                        AND c.consumer = ANY (coalesce(v_consumers, '{}')));
END
$$;

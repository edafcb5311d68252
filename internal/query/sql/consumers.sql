-- Dead-consumer detection: a started client's registration, its heartbeat,
-- its session lock, and the rescue that takes back the messages of
-- consumers that are gone (pgflow_rescue_dead, migration 0005).

-- name: RegisterConsumer
-- The heartbeat, which registers again a client whose row was deleted
-- (taken for gone): $1 registration id, $2 consumer id, $3 session lock key
-- or NULL, $4 expiry in ms. A heartbeat after a gap longer than twice the
-- expiry (an outage, a failover; shorter gaps are a loaded machine's late
-- heartbeats) restarts up_since. Returns whether the row was inserted.
INSERT INTO {{schema}}.pgflow_consumers AS c (id, consumer, lock_key, expiry_ms)
VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE
SET seen_at = now(),
    up_since = CASE WHEN c.seen_at < now() - c.expiry_ms * interval '2 milliseconds'
                    THEN now() ELSE c.up_since END
RETURNING xmax = 0 AS inserted;

-- name: LockConsumerSession
-- On the client's own session: takes the advisory lock $1 (a new random key
-- per session) and makes the server drop the session, and so the lock,
-- within seconds when the client's host is lost (TCP keepalives on the
-- server's side of this connection; ignored on Unix sockets).
SELECT pg_advisory_lock($1::bigint),
       set_config('tcp_keepalives_idle', '2', false),
       set_config('tcp_keepalives_interval', '1', false),
       set_config('tcp_keepalives_count', '2', false);

-- name: SetConsumerLock
-- $1 registration id, $2 the lock key its session now holds.
UPDATE {{schema}}.pgflow_consumers SET lock_key = $2, seen_at = now() WHERE id = $1;

-- name: DeregisterConsumer
-- At Stop, once every outcome is written: $1 registration id.
DELETE FROM {{schema}}.pgflow_consumers WHERE id = $1;

-- name: RescueLeases
-- The rescuer's one statement: expired leases (pgflow_rescue), then the
-- messages of consumers that are gone (pgflow_rescue_dead, judged by
-- registration $2; 0 judges nothing). $1 at most this many of each.
-- consumer is NULL for an expired lease.
SELECT id, queue_name, attempt, dead, NULL::text AS consumer FROM {{schema}}.pgflow_rescue($1::integer)
UNION ALL
SELECT id, queue_name, attempt, dead, consumer FROM {{schema}}.pgflow_rescue_dead($2::bigint, $1::integer);

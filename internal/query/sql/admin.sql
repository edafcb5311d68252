-- Operations: queue statistics, pending listings, counters.
-- These statements run with pgx.QueryExecModeCacheDescribe (unnamed
-- statements), so PostgreSQL plans each call for its actual parameters and
-- the "$n IS NULL OR …" filters fold away.

-- name: ListPending
-- Pending messages of one queue in claim order (priority DESC, visible_at,
-- id), keyset-paginated. Both branches are range scans of
-- pgflow_messages_claim_idx: the first finishes the cursor's priority, the
-- second continues with lower priorities.
-- $1 queue, $2 limit, $3/$4/$5 cursor (priority, visible_at, id; NULL for
-- the first page), $6 priority filter, $7 created at or after, $8 created
-- before, $9 ILIKE pattern on the error history, $10 visible at or after,
-- $11 visible before.
SELECT p.*, now() AS now FROM (
    (SELECT m.id, m.queue_name, m.payload, m.headers, m.priority, m.status, m.retry_count, m.attempt,
            m.dedup_key, m.visible_at, m.created_at, m.errors
     FROM {{schema}}.pgflow_messages m
     WHERE $3::smallint IS NOT NULL
       AND m.queue_name = $1 AND m.status = 'pending'
       AND m.priority = $3::smallint
       AND (m.visible_at, m.id) > ($4::timestamptz, $5::bigint)
       AND ($6::smallint IS NULL OR m.priority = $6)
       AND ($7::timestamptz IS NULL OR m.created_at >= $7)
       AND ($8::timestamptz IS NULL OR m.created_at < $8)
       AND ($9::text IS NULL OR m.errors::text ILIKE $9)
       AND ($10::timestamptz IS NULL OR m.visible_at >= $10)
       AND ($11::timestamptz IS NULL OR m.visible_at < $11)
     ORDER BY m.visible_at, m.id
     LIMIT $2)
    UNION ALL
    (SELECT m.id, m.queue_name, m.payload, m.headers, m.priority, m.status, m.retry_count, m.attempt,
            m.dedup_key, m.visible_at, m.created_at, m.errors
     FROM {{schema}}.pgflow_messages m
     WHERE m.queue_name = $1 AND m.status = 'pending'
       AND ($3::smallint IS NULL OR m.priority < $3::smallint)
       AND ($6::smallint IS NULL OR m.priority = $6)
       AND ($7::timestamptz IS NULL OR m.created_at >= $7)
       AND ($8::timestamptz IS NULL OR m.created_at < $8)
       AND ($9::text IS NULL OR m.errors::text ILIKE $9)
       AND ($10::timestamptz IS NULL OR m.visible_at >= $10)
       AND ($11::timestamptz IS NULL OR m.visible_at < $11)
     ORDER BY m.priority DESC, m.visible_at, m.id
     LIMIT $2)
) p
ORDER BY p.priority DESC, p.visible_at, p.id
LIMIT $2;

-- name: AddQueueStats
-- Adds one client's counters. Parallel arrays: $1 queue, $2 bucket (minute
-- start), $3 handled, $4 failed, $5 retried, $6 dead_lettered, $7
-- lease_expired, $8 expired, $9 dlq_deleted.
INSERT INTO {{schema}}.pgflow_queue_stats AS s
    (queue_name, bucket, handled, failed, retried, dead_lettered, lease_expired, expired, dlq_deleted)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                     $8::bigint[], $9::bigint[])
ON CONFLICT (queue_name, bucket) DO UPDATE SET
    handled = s.handled + EXCLUDED.handled,
    failed = s.failed + EXCLUDED.failed,
    retried = s.retried + EXCLUDED.retried,
    dead_lettered = s.dead_lettered + EXCLUDED.dead_lettered,
    lease_expired = s.lease_expired + EXCLUDED.lease_expired,
    expired = s.expired + EXCLUDED.expired,
    dlq_deleted = s.dlq_deleted + EXCLUDED.dlq_deleted;

-- name: PruneQueueStats
-- Drops buckets older than $1 seconds.
DELETE FROM {{schema}}.pgflow_queue_stats
WHERE bucket < now() - $1::bigint * interval '1 second';

-- name: ListInFlight
-- A queue's leased messages, the lease closest to expiry first, through
-- pgflow_messages_lease_idx. $1 queue, $2 limit.
SELECT m.id, m.queue_name, m.payload, m.headers, m.priority, m.attempt, m.retry_count,
       coalesce(m.locked_by, ''), m.locked_until, m.created_at, now()
FROM {{schema}}.pgflow_messages m
WHERE m.status = 'processing' AND m.queue_name = $1
ORDER BY m.locked_until, m.id
LIMIT $2;

-- Console: reads the browser console (package console) needs beyond the
-- calls above.

-- name: GetMessage
-- One live (pending or in-flight) message by id, through the primary key.
SELECT m.id, m.queue_name, m.payload, m.headers, m.priority, m.status, m.retry_count, m.attempt,
       m.dedup_key, m.visible_at, coalesce(m.locked_by, ''), m.locked_until, m.created_at, m.errors, now()
FROM {{schema}}.pgflow_messages m
WHERE m.id = $1;

-- name: StatsSeries
-- Delivery counters per queue and time bin over the last $2 seconds, bins of
-- $3 seconds (aligned to the epoch), for queue $1 or every queue (NULL).
-- Each queue's rows are one range scan of the primary key (queue_name,
-- bucket). Bins without counters are absent; the caller fills them with 0.
SELECT q.queue_name, s.bin, s.handled, s.failed, s.dead_lettered, now()
FROM {{schema}}.pgflow_queues q
CROSS JOIN LATERAL (
    SELECT date_bin($3::bigint * interval '1 second', st.bucket, timestamptz '1970-01-01 00:00:00+00') AS bin,
           sum(st.handled)::bigint AS handled, sum(st.failed)::bigint AS failed,
           sum(st.dead_lettered)::bigint AS dead_lettered
    FROM {{schema}}.pgflow_queue_stats st
    WHERE st.queue_name = q.queue_name
      AND st.bucket >= now() - $2::bigint * interval '1 second'
    GROUP BY 1
) s
WHERE ($1::text IS NULL OR q.queue_name = $1)
ORDER BY q.queue_name, s.bin;

-- name: QueueMessageStats
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
           sum(s.expired)       FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '1 minute')  AS expired_1m,
           sum(s.dlq_deleted)   FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '1 minute')  AS dlq_deleted_1m,
           sum(s.expired)       FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '5 minutes') AS expired_5m,
           sum(s.dlq_deleted)   FILTER (WHERE s.bucket >= date_trunc('minute', now()) - interval '5 minutes') AS dlq_deleted_5m,
           sum(s.handled)  AS handled_1h,
           sum(s.failed)   AS failed_1h,
           sum(s.dead_lettered) AS dead_1h,
           sum(s.expired) AS expired_1h,
           sum(s.dlq_deleted) AS dlq_deleted_1h
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
       now(),
       q.dlq_retention_ms, q.expiry_ms,
       coalesce(w.expired_1m, 0)::bigint, coalesce(w.dlq_deleted_1m, 0)::bigint,
       coalesce(w.expired_5m, 0)::bigint, coalesce(w.dlq_deleted_5m, 0)::bigint,
       coalesce(w.expired_1h, 0)::bigint, coalesce(w.dlq_deleted_1h, 0)::bigint
FROM {{schema}}.pgflow_queues q
LEFT JOIN pend p ON p.queue_name = q.queue_name
LEFT JOIN retrying r ON r.queue_name = q.queue_name
LEFT JOIN leased l ON l.queue_name = q.queue_name
LEFT JOIN win w ON w.queue_name = q.queue_name
WHERE ($1::text IS NULL OR q.queue_name = $1)
ORDER BY q.queue_name;

-- name: QueueDLQStats
-- Each queue's dead-letter count and newest dead-lettering time, in one
-- index-only scan of pgflow_dlq_queue_created_idx. $1 queue or NULL.
SELECT d.queue_name, count(*), max(d.created_at)
FROM {{schema}}.pgflow_dlq d
WHERE ($1::text IS NULL OR d.queue_name = $1)
GROUP BY d.queue_name;

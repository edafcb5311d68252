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
-- start), $3 handled, $4 failed, $5 retried, $6 dead_lettered, $7 lease_expired.
INSERT INTO {{schema}}.pgflow_queue_stats AS s
    (queue_name, bucket, handled, failed, retried, dead_lettered, lease_expired)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
ON CONFLICT (queue_name, bucket) DO UPDATE SET
    handled = s.handled + EXCLUDED.handled,
    failed = s.failed + EXCLUDED.failed,
    retried = s.retried + EXCLUDED.retried,
    dead_lettered = s.dead_lettered + EXCLUDED.dead_lettered,
    lease_expired = s.lease_expired + EXCLUDED.lease_expired;

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
-- counts of its live messages by state (see pgflow_queue_stats_live). The
-- dead-letter part is QueueDLQStats, read on another connection at the
-- same time: with a large queue and a large DLQ the two index scans then
-- take max(a, b) instead of a + b.
SELECT * FROM {{schema}}.pgflow_queue_stats_live($1::text);

-- name: QueueDLQStats
-- Each queue's dead-letter count and newest dead-lettering time, in one
-- index-only scan of pgflow_dlq_queue_created_idx. $1 queue or NULL.
SELECT * FROM {{schema}}.pgflow_queue_stats_dlq($1::text);

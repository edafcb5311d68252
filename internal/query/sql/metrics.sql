-- Metrics: gauges read at scrape time by promflow, otelpgflow and
-- `pgflow serve`. Every part is an aggregate served by an index:
--   pending rows    -> pgflow_messages_claim_idx (partial, status = 'pending'),
--                      index-only when the visibility map is fresh;
--   processing rows -> pgflow_messages_lease_idx (partial, status = 'processing'),
--                      a handful of rows (bounded by the consumers' workers);
--   DLQ rows        -> pgflow_dlq_queue_created_idx, index-only.
-- The cost grows with the number of pending and dead-lettered rows, so
-- callers cache the result for a few seconds (see docs/metrics.md).

-- name: QueueDepthsSettings
-- Run first, in QueueDepths' transaction. After a backlog has come and gone
-- the heap stays large while the partial indexes are small again, and the
-- planner still picks a sequential scan of the heap: 100 ms instead of 5 ms
-- for 10k pending rows in a table that had held 1M (docs/metrics.md). With
-- sequential scans priced out it reads the indexes. Parallel workers cost
-- more than they save on a scrape. (set_config(..., true) is SET LOCAL as
-- one preparable statement.)
SELECT set_config('enable_seqscan', 'off', true),
       set_config('max_parallel_workers_per_gather', '0', true);

-- name: QueueDepths
-- One row per queue known to pgflow_queues, pgflow_messages or pgflow_dlq:
-- queue, paused, ready, delayed, processing, expired leases, dlq size,
-- oldest ready age in seconds (0 when nothing is ready).
WITH pending AS (
    SELECT queue_name,
           count(*) FILTER (WHERE visible_at <= now()) AS ready,
           count(*) FILTER (WHERE visible_at > now())  AS delayed,
           min(visible_at) FILTER (WHERE visible_at <= now()) AS oldest_ready
    FROM {{schema}}.pgflow_messages
    WHERE status = 'pending'
    GROUP BY queue_name
), processing AS (
    SELECT queue_name,
           count(*) AS processing,
           count(*) FILTER (WHERE locked_until < now()) AS expired
    FROM {{schema}}.pgflow_messages
    WHERE status = 'processing'
    GROUP BY queue_name
), dlq AS (
    SELECT queue_name, count(*) AS dead
    FROM {{schema}}.pgflow_dlq
    GROUP BY queue_name
), names AS (
    SELECT queue_name FROM {{schema}}.pgflow_queues
    UNION SELECT queue_name FROM pending
    UNION SELECT queue_name FROM processing
    UNION SELECT queue_name FROM dlq
)
SELECT n.queue_name,
       coalesce(q.paused, false),
       coalesce(p.ready, 0),
       coalesce(p.delayed, 0),
       coalesce(pr.processing, 0),
       coalesce(pr.expired, 0),
       coalesce(d.dead, 0),
       coalesce(extract(epoch FROM now() - p.oldest_ready), 0)::float8
FROM names n
LEFT JOIN {{schema}}.pgflow_queues q ON q.queue_name = n.queue_name
LEFT JOIN pending p ON p.queue_name = n.queue_name
LEFT JOIN processing pr ON pr.queue_name = n.queue_name
LEFT JOIN dlq d ON d.queue_name = n.queue_name
ORDER BY n.queue_name;

-- Queue definitions.

-- name: EnsureQueue
-- Creates a queue with default settings if it does not exist yet. Returns a
-- row only when this statement created it: no row means the queue exists and
-- is committed (ON CONFLICT waits for a concurrent creator to finish).
INSERT INTO {{schema}}.pgflow_queues (queue_name) VALUES ($1)
ON CONFLICT (queue_name) DO NOTHING
RETURNING queue_name;

-- name: UpsertQueue
-- $1 name, $2 max_retries, $3 retry_delay_ms, $4 max_retry_delay_ms, $5 lease_ms, $6 priority
INSERT INTO {{schema}}.pgflow_queues AS q
    (queue_name, max_retries, retry_delay_ms, max_retry_delay_ms, lease_ms, priority)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (queue_name) DO UPDATE SET
    max_retries = EXCLUDED.max_retries,
    retry_delay_ms = EXCLUDED.retry_delay_ms,
    max_retry_delay_ms = EXCLUDED.max_retry_delay_ms,
    lease_ms = EXCLUDED.lease_ms,
    priority = EXCLUDED.priority,
    updated_at = now()
WHERE (q.max_retries, q.retry_delay_ms, q.max_retry_delay_ms, q.lease_ms, q.priority)
      IS DISTINCT FROM
      (EXCLUDED.max_retries, EXCLUDED.retry_delay_ms, EXCLUDED.max_retry_delay_ms, EXCLUDED.lease_ms, EXCLUDED.priority);

-- name: GetQueue
SELECT queue_name, max_retries, retry_delay_ms, max_retry_delay_ms, lease_ms, priority, paused, created_at, updated_at
FROM {{schema}}.pgflow_queues
WHERE queue_name = $1;

-- name: ListQueueDefinitions
SELECT queue_name, max_retries, retry_delay_ms, max_retry_delay_ms, lease_ms, priority, paused, created_at, updated_at
FROM {{schema}}.pgflow_queues
ORDER BY queue_name;

-- name: SetQueuePaused
UPDATE {{schema}}.pgflow_queues SET paused = $2, updated_at = now()
WHERE queue_name = $1
RETURNING queue_name;

-- name: Notify
SELECT pg_notify($1, $2);

-- name: NotifySettings
-- Sent before the debounced NOTIFYs of the publishing side (notify.Sender),
-- in the same implicit transaction. NOTIFY gives its transaction an xid, so
-- it commits like a write and, by default, waits for a WAL flush of its own:
-- one per debounce interval, competing with the publishes' flushes (W2 ran
-- 9,172 publishes/s with them, 10,363 with NOTIFY effectively off). A notification need not survive a crash (listeners wake
-- every consumer when they reconnect), and it is sent only after the
-- messages it announces committed, so its transaction commits without
-- waiting.
SELECT set_config('synchronous_commit', 'off', true);

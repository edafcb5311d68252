-- Queue definitions.

-- name: EnsureQueue
-- Creates a queue with default settings if it does not exist yet. The
-- columns' defaults are the only defaults of queue settings: a queue created
-- on first publish and one declared with unset fields get the same. Returns a
-- row only when this statement created it: no row means the queue exists and
-- is committed (ON CONFLICT waits for a concurrent creator to finish).
INSERT INTO {{schema}}.pgflow_queues (queue_name) VALUES ($1)
ON CONFLICT (queue_name) DO NOTHING
RETURNING queue_name;

-- name: UpdateQueue
-- Applies a declaration to an existing queue: $2 max_retries, $3
-- retry_delay_ms, $4 max_retry_delay_ms, $5 lease_ms, $6 priority, each NULL
-- when the declaration leaves it unset (the stored value stays). Returns the
-- old and the new values, or no row when nothing changes. The subquery locks
-- the row first, so the old values are the ones this update replaces even
-- when declarations race.
UPDATE {{schema}}.pgflow_queues AS q SET
    max_retries = coalesce($2, o.max_retries),
    retry_delay_ms = coalesce($3, o.retry_delay_ms),
    max_retry_delay_ms = coalesce($4, o.max_retry_delay_ms),
    lease_ms = coalesce($5, o.lease_ms),
    priority = coalesce($6, o.priority),
    updated_at = now()
FROM (SELECT queue_name, max_retries, retry_delay_ms, max_retry_delay_ms, lease_ms, priority
      FROM {{schema}}.pgflow_queues
      WHERE queue_name = $1
      FOR UPDATE) AS o
WHERE q.queue_name = o.queue_name
  AND (o.max_retries, o.retry_delay_ms, o.max_retry_delay_ms, o.lease_ms, o.priority)
      IS DISTINCT FROM
      (coalesce($2, o.max_retries), coalesce($3, o.retry_delay_ms), coalesce($4, o.max_retry_delay_ms),
       coalesce($5, o.lease_ms), coalesce($6, o.priority))
RETURNING o.max_retries, o.retry_delay_ms, o.max_retry_delay_ms, o.lease_ms, o.priority,
          q.max_retries, q.retry_delay_ms, q.max_retry_delay_ms, q.lease_ms, q.priority;

-- name: GetQueue
SELECT queue_name, max_retries, retry_delay_ms, max_retry_delay_ms, lease_ms, priority, paused, created_at, updated_at
FROM {{schema}}.pgflow_queues
WHERE queue_name = $1;

-- name: ListQueueDefinitions
SELECT queue_name, max_retries, retry_delay_ms, max_retry_delay_ms, lease_ms, priority, paused, created_at, updated_at
FROM {{schema}}.pgflow_queues
ORDER BY queue_name;

-- name: PauseQueue
-- pgflow_pause: raises SQLSTATE 42704 when the queue does not exist.
SELECT {{schema}}.pgflow_pause($1::text);

-- name: ResumeQueue
-- pgflow_resume: raises SQLSTATE 42704 when the queue does not exist;
-- notifies the queue's consumers.
SELECT {{schema}}.pgflow_resume($1::text);

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

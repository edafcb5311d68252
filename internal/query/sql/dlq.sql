-- Dead-letter queue: list, show, redrive, purge.
-- Filters shared by ListDLQ, RedriveDLQ and PurgeDLQ (NULL: no filter):
-- $1 ids (bigint[]), $2 queue, $3 dead-lettered at or after, $4 dead-lettered
-- before, $5 ILIKE pattern on the last error, $6 priority.

-- name: ListDLQ
-- Newest first (dead-lettering time, then id), keyset-paginated: $7 limit,
-- $8/$9 cursor (created_at, id of the previous page's last row). Walks
-- pgflow_dlq_queue_created_idx with a queue, pgflow_dlq_created_idx without
-- (both also serve the time range); other filters apply during the walk.
SELECT d.id, d.message_id, d.queue_name, d.payload, d.headers, d.priority, d.dedup_key,
       d.error, d.errors, d.retry_count, d.attempts, d.message_created_at, d.created_at, d.reason
FROM {{schema}}.pgflow_dlq d
WHERE ($1::bigint[] IS NULL OR d.id = ANY($1::bigint[]))
  AND ($2::text IS NULL OR d.queue_name = $2)
  AND ($3::timestamptz IS NULL OR d.created_at >= $3)
  AND ($4::timestamptz IS NULL OR d.created_at < $4)
  AND ($5::text IS NULL OR d.error ILIKE $5)
  AND ($6::smallint IS NULL OR d.priority = $6)
  AND ($8::timestamptz IS NULL OR (d.created_at, d.id) < ($8::timestamptz, $9::bigint))
ORDER BY d.created_at DESC, d.id DESC
LIMIT $7;

-- name: GetDLQ
SELECT d.id, d.message_id, d.queue_name, d.payload, d.headers, d.priority, d.dedup_key,
       d.error, d.errors, d.retry_count, d.attempts, d.message_created_at, d.created_at, d.reason
FROM {{schema}}.pgflow_dlq d
WHERE d.id = $1;

-- name: MaxDLQID
SELECT coalesce(max(id), 0) FROM {{schema}}.pgflow_dlq;

-- name: RedriveDLQ
-- Moves one chunk of matching DLQ rows back to their source queue in one
-- statement: each row is deleted from pgflow_dlq and inserted into
-- pgflow_messages together, or neither happens. The message gets its
-- original id and created_at back, starts fresh (pending, visible now,
-- retry_count 0, attempt 0) and keeps its error history in errors.
-- A row is skipped, and stays in the DLQ, when its id is live again
-- (id_live), its dedup key is held by a live message (dedup_key_live), or an
-- older DLQ row of the chunk has the same dedup key (dedup_key_duplicate).
-- $7 chunk size, $8 ids above, $9 ids up to, $10 NOTIFY channel.
-- Returns every picked row with its outcome (skip NULL: redriven).
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
    SELECT pg_notify($10::text, w.queue_name) FROM (SELECT DISTINCT queue_name FROM ins) w
)
SELECT c.id, c.message_id, c.queue_name, c.skip, (SELECT count(*) FROM woke) AS notified
FROM cand c
ORDER BY c.id;

-- name: PurgeDLQ
-- Deletes one chunk of matching DLQ rows. $7 chunk size, $8 ids above,
-- $9 ids up to. Returns the deleted rows' id and queue.
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
RETURNING d.id, d.queue_name;

-- name: CountDLQ
-- How many DLQ rows the filter ($1-$6) selects.
SELECT count(*)
FROM {{schema}}.pgflow_dlq d
WHERE ($1::bigint[] IS NULL OR d.id = ANY($1::bigint[]))
  AND ($2::text IS NULL OR d.queue_name = $2)
  AND ($3::timestamptz IS NULL OR d.created_at >= $3)
  AND ($4::timestamptz IS NULL OR d.created_at < $4)
  AND ($5::text IS NULL OR d.error ILIKE $5)
  AND ($6::smallint IS NULL OR d.priority = $6);

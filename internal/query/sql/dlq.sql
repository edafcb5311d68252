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
       d.error, d.errors, d.retry_count, d.attempts, d.message_created_at, d.created_at
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
       d.error, d.errors, d.retry_count, d.attempts, d.message_created_at, d.created_at
FROM {{schema}}.pgflow_dlq d
WHERE d.id = $1;

-- name: MaxDLQID
SELECT coalesce(max(id), 0) FROM {{schema}}.pgflow_dlq;

-- name: RedriveDLQ
-- Moves one chunk of matching DLQ rows back to their source queue
-- (pgflow_dlq_redrive_chunk, the one home of a redrive; it notifies
-- consumers). Filters $1-$6 as above, $7 chunk size, $8 ids above, $9 ids
-- up to. Returns every picked row with its outcome (skip NULL: redriven).
SELECT id, message_id, queue_name, skip
FROM {{schema}}.pgflow_dlq_redrive_chunk($1::bigint[], $2::text, $3::timestamptz, $4::timestamptz, $5::text,
                                         $6::smallint, $7::integer, $8::bigint, $9::bigint);

-- name: PurgeDLQ
-- Deletes one chunk of matching DLQ rows (pgflow_dlq_purge_chunk). $7
-- chunk size, $8 ids above, $9 ids up to. Returns the deleted rows' id and
-- queue.
SELECT id, queue_name
FROM {{schema}}.pgflow_dlq_purge_chunk($1::bigint[], $2::text, $3::timestamptz, $4::timestamptz, $5::text,
                                       $6::smallint, $7::integer, $8::bigint, $9::bigint);

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

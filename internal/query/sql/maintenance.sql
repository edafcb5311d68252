-- Maintenance: expiry, dead-letter retention, recovery after a restore.

-- name: MaintenanceLock
-- $1 the schema's maintenance key. A transaction-scoped lock, released at
-- commit, so it also works through a transaction-mode connection pooler: at
-- most one client of the schema runs a maintenance batch at a time.
SELECT pg_try_advisory_xact_lock($1::bigint);

-- name: ExpireMessages
-- $1 at most this many.
SELECT id, queue_name, attempt, dead FROM {{schema}}.pgflow_expire($1::integer);

-- name: TrimDLQ
-- $1 at most this many.
SELECT queue_name, deleted FROM {{schema}}.pgflow_dlq_trim($1::integer);

-- name: RecoverLeases
SELECT queue_name, released FROM {{schema}}.pgflow_recover();

-- pgflow schema, version 2: operations (monitoring counters, DLQ indexes).

-- Per-queue counters in one-minute buckets. Acked messages are deleted, so
-- "handled in the last 5 minutes" cannot be read from pgflow_messages: every
-- client adds what its own events saw (completed, retried, dead-lettered,
-- lease expired) in one upsert every few seconds, never per message.
CREATE TABLE {{schema}}.pgflow_queue_stats (
    queue_name    text        NOT NULL,
    bucket        timestamptz NOT NULL, -- start of the minute
    handled       bigint      NOT NULL DEFAULT 0, -- handler returned nil
    failed        bigint      NOT NULL DEFAULT 0, -- failed deliveries (handler error or expired lease)
    retried       bigint      NOT NULL DEFAULT 0, -- failed and scheduled for another attempt
    dead_lettered bigint      NOT NULL DEFAULT 0, -- moved to pgflow_dlq
    lease_expired bigint      NOT NULL DEFAULT 0, -- taken back by the lease rescuer
    PRIMARY KEY (queue_name, bucket)
);

-- DLQ listing, redrive and purge by queue walk this index in id order
-- (keyset pagination), so a queue's page or chunk never sorts the whole DLQ.
CREATE INDEX pgflow_dlq_queue_id_idx ON {{schema}}.pgflow_dlq (queue_name, id);

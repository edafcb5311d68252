-- Fan-out topics: thin calls of the SQL API's topic functions (migration 7).

-- name: Subscribe
-- $1 topic, $2 queue. True when the subscription is new.
SELECT {{schema}}.pgflow_subscribe($1::text, $2::text);

-- name: Unsubscribe
-- $1 topic, $2 queue. True when there was a subscription.
SELECT {{schema}}.pgflow_unsubscribe($1::text, $2::text);

-- name: PublishTopic
-- $1 topic, $2 payload (JSON text), $3 headers (JSON text), $4 priority
-- (NULL: each queue's), $5 delay in ms, $6 allow no subscribers, $7
-- absolute visible_at (wins over $5 when not NULL), $8 expiry in ms and $9
-- absolute expires_at (NULL both: each queue's default expiry). One row per
-- subscribed queue; raises SQLSTATE PF001 when there is none and $6 is false.
SELECT queue, id
FROM {{schema}}.pgflow_publish($1::text, $2::text::jsonb, $3::text::jsonb, $4::integer, $5::bigint, $6::boolean,
                               $7::timestamptz, $8::bigint, $9::timestamptz);

-- name: ListSubscriptions
-- $1 topic (NULL: every topic), by topic then queue.
SELECT s.topic, s.queue_name, s.created_at
FROM {{schema}}.pgflow_topic_subscriptions s
WHERE ($1::text IS NULL OR s.topic = $1::text)
ORDER BY s.topic, s.queue_name;

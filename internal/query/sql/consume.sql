-- Consuming: claim, acknowledge, fail, extend, release, rescue.
-- Each is a call of the one function (migration 0004) that holds that state
-- change; the functions carry the planner settings the hot path needs and
-- the claim's asynchronous commit. Every call that touches a delivery
-- matches (id, claim_token): each claim draws a new token, so a consumer
-- whose lease was taken over, or whose claim was lost in a server crash,
-- cannot touch the new delivery. Every parameter is cast: the SQL API
-- (migration 7) overloads these names for one delivery at a time, and an
-- untyped parameter could match both.

-- name: ClaimMessages
-- $1 queue, $2 how many, $3 consumer id, $4 lease in ms. Rows in no order;
-- a last row with id NULL, when fewer than $2 were claimed, carries
-- next_in_us (see pgflow_claim).
SELECT id, payload, headers, priority, attempt, retry_count, created_at, visible_at,
       locked_until, claim_token, next_in_us
FROM {{schema}}.pgflow_claim($1::text, $2::integer, $3::text, $4::bigint);

-- name: ClaimMessagesAfter
-- ClaimMessages from a remembered claim-order key: $5 priority, $6
-- visible_at, $7 id.
SELECT id, payload, headers, priority, attempt, retry_count, created_at, visible_at,
       locked_until, claim_token, next_in_us
FROM {{schema}}.pgflow_claim($1::text, $2::integer, $3::text, $4::bigint, $5::smallint, $6::timestamptz, $7::bigint);

-- name: AckMessages
-- The consumer's acknowledgements: $1 ids, $2 claim tokens. Commits without
-- waiting for its WAL flush (see pgflow_ack). Returns how many were deleted.
SELECT {{schema}}.pgflow_ack($1::bigint[], $2::bigint[], true);

-- name: AckMessageTx
-- AckTx, in the caller's transaction, whose commit is left as it is:
-- $1 id, $2 claim token.
SELECT {{schema}}.pgflow_ack(ARRAY[$1::bigint], ARRAY[$2::bigint], false);

-- name: FailMessages
-- $1 ids, $2 claim tokens, $3 errors, $4 retry delay in ms, $5 permanent.
SELECT id, dead FROM {{schema}}.pgflow_fail($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::boolean[]);

-- name: ExtendLeases
-- $1 ids, $2 claim tokens, $3 lease in ms. Returns the ids still held.
SELECT id FROM {{schema}}.pgflow_extend($1::bigint[], $2::bigint[], $3::bigint) AS id;

-- name: ReleaseMessages
-- $1 ids, $2 claim tokens.
SELECT id FROM {{schema}}.pgflow_release($1::bigint[], $2::bigint[]) AS id;

-- name: RescueExpiredLeases
-- $1 at most this many.
SELECT id, queue_name, attempt, dead FROM {{schema}}.pgflow_rescue($1::integer);

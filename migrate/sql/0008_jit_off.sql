-- pgflow schema, version 8: the engine's functions never JIT-compile.
--
-- The state functions plan with enable_seqscan (and the other scans and
-- joins they must not use) off, so that a generic plan cannot pick a scan
-- of the whole table. Where no index serves a condition, as for the few
-- rows of pgflow_consumers that pgflow_rescue_dead reads on every rescuer
-- tick, the planner keeps the disabled scan at a cost of 10^10, far past
-- jit_above_cost: each call then JIT-compiled its statement, 20-70 ms of
-- a core for a query that reads one row, every 500 ms per started client
-- (and a stall of that length for whatever waited on it; pickup latency's
-- p99 rose by 60 % with it). Their statements are short, so compiling
-- never pays; jit = off for each of them.
ALTER FUNCTION {{schema}}.pgflow_settle(bigint[], text[], bigint[], boolean[]) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_claim(text, integer, text, bigint, smallint, timestamptz, bigint) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_ack(bigint[], bigint[], boolean) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_fail(bigint[], bigint[], text[], bigint[], boolean[]) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_rescue(integer) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_extend(bigint[], bigint[], bigint) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_release(bigint[], bigint[]) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_rescue_dead(bigint, integer) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_expire(integer) SET jit = off;
ALTER FUNCTION {{schema}}.pgflow_queue_stats(text) SET jit = off;

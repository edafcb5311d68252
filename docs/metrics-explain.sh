#!/usr/bin/env bash
# One-off measurement behind docs/metrics.md: what one read of the queue
# gauges (QueueDepths in internal/query/sql/metrics.sql) costs on 1M pending
# rows, then on 10k pending rows left in the same (bloated) table, with the
# planner's default choice and with the settings pgflow applies.
# Usage: PGURL=postgres://postgres@127.0.0.1:5432/test docs/metrics-explain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432/test}
S=pgflow_explain_$$
psql() { command psql "$PGURL" -X -q -v ON_ERROR_STOP=1 "$@"; }
trap 'psql -c "DROP SCHEMA IF EXISTS $S CASCADE"' EXIT
psql -c "CREATE SCHEMA $S"
sed "s/{{schema}}/$S/g" migrate/sql/0001_init.sql | psql
psql <<SQL
INSERT INTO $S.pgflow_queues(queue_name) SELECT 'q'||i FROM generate_series(1,6) i;
-- 1M pending rows over 6 queues and 3 priorities, 10% delayed by an hour.
INSERT INTO $S.pgflow_messages(queue_name, payload, priority, visible_at)
SELECT 'q'||(1+i%6), '{"n":1,"body":"some payload text of moderate size"}', (i%3)*5,
       now() - (i%1000)*interval '1 second' + CASE WHEN i%10=0 THEN interval '1 hour' ELSE interval '0' END
FROM generate_series(1,1000000) i;
INSERT INTO $S.pgflow_messages(queue_name, payload, status, locked_by, locked_until, attempt)
SELECT 'q'||(1+i%6), '{}', 'processing', 'c1', now()+interval '30 s', 1 FROM generate_series(1,200) i;
INSERT INTO $S.pgflow_dlq(message_id, queue_name, payload, error, message_created_at)
SELECT i, 'q'||(1+i%6), '{}', 'boom', now() FROM generate_series(1,100000) i;
SQL
psql -c "VACUUM ANALYZE $S.pgflow_messages" -c "VACUUM ANALYZE $S.pgflow_dlq" -c "VACUUM ANALYZE $S.pgflow_queues"
Q=$(awk '/-- name: QueueDepths$/{f=1;next} f' internal/query/sql/metrics.sql | grep -v '^--' | sed "s/{{schema}}/$S/g")
SETTINGS=$(awk '/-- name: QueueDepthsSettings$/{f=1;next} /-- name:/{f=0} f' internal/query/sql/metrics.sql | grep -v '^--')
measure() {
  echo "== $1"
  for mode in default pgflow; do
    for i in 1 2 3; do
      if [ $mode = pgflow ]; then pre="BEGIN; $SETTINGS"; else pre="BEGIN;"; fi
      printf '%s\n' "$pre" "EXPLAIN (ANALYZE, BUFFERS) $Q;" "COMMIT;" | psql -At |
        grep -E 'Execution Time' | sed "s/^/$mode run $i: /"
    done
  done
  printf '%s\n' "BEGIN; $SETTINGS" "EXPLAIN (ANALYZE, BUFFERS) $Q;" "COMMIT;" | psql -At |
    grep -E 'Scan using|Seq Scan|Heap Fetches' | sed 's/^ */  /'
}
measure "1M pending, 200 processing, 100k DLQ"
psql -c "DELETE FROM $S.pgflow_messages WHERE status = 'pending' AND id % 100 <> 0" \
     -c "DELETE FROM $S.pgflow_dlq WHERE id % 100 <> 0" \
     -c "VACUUM ANALYZE $S.pgflow_messages" -c "VACUUM ANALYZE $S.pgflow_dlq"
measure "10k pending, 200 processing, 1k DLQ, in the table that held 1M"

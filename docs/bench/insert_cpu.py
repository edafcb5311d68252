#!/usr/bin/python3
"""Server CPU of one 1,000-row batch insert, pgflow's statements against
pgmq's send_batch, read from the backend's utime+stime in /proc (so it does
not count the time the backend waits for a core on a busy machine).

Run on the database server's host, with /usr/bin/python3 (psycopg 3):

    /usr/bin/python3 docs/bench/insert_cpu.py [reps]

PGFLOW_DB (default bench_pgflow, migrated by `pgflow bench`) and PGMQ_DB
(default bench_pgmq, with pgmq installed and queue w1 created by the pgmq
harness). Variants run alternately, 30 statements each, tables truncated and
CHECKPOINTed before each; the median per variant is printed last.
"""
import json, os, statistics, sys, time

import psycopg

N, K = 1000, 30
PGFLOW = os.environ.get("PGFLOW_DB", "bench_pgflow")
PGMQ = os.environ.get("PGMQ_DB", "bench_pgmq")
payloads = [json.dumps({"seq": i, "pad": "x" * 180}) for i in range(N)]

PLAIN = """INSERT INTO public.pgflow_messages (queue_name, payload, headers, priority, visible_at)
SELECT i.queue_name, i.payload::jsonb, i.headers::jsonb, coalesce(i.priority, q.priority, 0),
       coalesce(i.visible_at, now() + i.delay_us * interval '1 microsecond')
FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::bigint[], %s::timestamptz[])
     WITH ORDINALITY AS i(queue_name, payload, headers, priority, delay_us, visible_at, ord)
LEFT JOIN public.pgflow_queues q ON q.queue_name = i.queue_name
ORDER BY i.ord RETURNING id"""
ONE = """INSERT INTO public.pgflow_messages (queue_name, payload, priority)
SELECT %s::text, i.payload::jsonb,
       coalesce((SELECT q.priority FROM public.pgflow_queues q WHERE q.queue_name = 'bench'), 0)
FROM unnest(%s::text[]) WITH ORDINALITY AS i(payload, ord) ORDER BY i.ord RETURNING id"""

variants = {
    # InsertMessagesPlain: six parallel arrays
    "pgflow plain": (PGFLOW, "TRUNCATE pgflow_messages", PLAIN,
                     (["bench"] * N, payloads, ["{}"] * N, [None] * N, [0] * N, [None] * N)),
    # InsertMessagesOneQueue: the queue once, one array of payloads
    "pgflow one queue": (PGFLOW, "TRUNCATE pgflow_messages", ONE, ("bench", payloads)),
    "pgmq send_batch": (PGMQ, "TRUNCATE pgmq.q_w1", "SELECT * FROM pgmq.send_batch('w1', %s::jsonb[])", (payloads,)),
}


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    conns, res = {}, {k: [] for k in variants}
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={PGFLOW}", autocommit=True) as c:
        c.execute("INSERT INTO pgflow_queues (queue_name) VALUES ('bench') ON CONFLICT DO NOTHING")
    for r in range(reps):
        for name, (db, trunc, sql, args) in variants.items():
            c = conns.get(name) or psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True)
            conns[name] = c
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
            c.execute(trunc)
            c.execute("CHECKPOINT")
            t0, w0 = cpu_seconds(pid), time.time()
            for _ in range(K):
                c.execute(sql, args, prepare=True).fetchall()
            ms = (cpu_seconds(pid) - t0) / K * 1000
            res[name].append(ms)
            print(f"rep {r} {name}: backend CPU {ms:.1f} ms per batch, wall {(time.time() - w0) / K * 1000:.1f} ms", flush=True)
    for name, xs in res.items():
        print(f"MEDIAN {name}: {statistics.median(xs):.1f} ms backend CPU per {N}-row batch {sorted(round(x, 1) for x in xs)}")


if __name__ == "__main__":
    main()

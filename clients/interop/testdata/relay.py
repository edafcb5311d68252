"""The interoperability test's Python hop: consumes FROM with the Python
client and sends each message on to TO with its headers unchanged, adding
"python" to payload["hops"], in one transaction with the acknowledgement.
Prints "ready" once started and "stopped <released> <abandoned>" after a
graceful stop on SIGTERM."""

import os
import signal
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import psycopg  # noqa: E402

from pgflow import Producer, Worker  # noqa: E402

url, schema, src, dst = (os.environ[k] for k in ("PGFLOW_URL", "PGFLOW_SCHEMA", "FROM", "TO"))
producer = Producer(url, schema=schema)
local = threading.local()


def relay(m):
    # The send and the acknowledgement commit together: a crash or a lost
    # lease cannot forward a message twice. One connection per handler
    # thread.
    if getattr(local, "conn", None) is None or local.conn.closed:
        local.conn = psycopg.connect(url)
    with local.conn.transaction():
        producer.send(dst, dict(m.payload, hops=m.payload["hops"] + ["python"]), headers=m.headers, conn=local.conn)
        worker.ack_tx(local.conn, m)


stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
worker = Worker(url, src, relay, schema=schema, concurrency=4, poll_interval_ms=500,
                consumer_id="interop-python").start()
print("ready", flush=True)
stop.wait()
result = worker.stop(timeout=5)
producer.close()
print("stopped %d %d" % (result.released, result.abandoned), flush=True)

"""Producer: sends messages to queues and publishes to topics through
pgflow's SQL functions (pgflow_send, pgflow_send_batch, pgflow_publish),
which write and NOTIFY in one statement, so consumers in any language wake
at once."""

import threading

import psycopg

from . import _check
from .errors import InputError


class Producer:
    """Sends messages. Give it a conninfo (it opens one autocommit
    connection of its own, shared by its threads) or a psycopg connection
    (yours; it is never closed). Every method also takes conn=, a
    connection in a transaction of yours: the message commits or rolls back
    with it."""

    def __init__(self, conninfo=None, *, conn=None, schema="public"):
        self._s = _check.quoted_schema(schema)
        if conn is None and not conninfo:
            raise InputError("conninfo", "pass a conninfo or a psycopg connection as conn")
        self._conninfo = conninfo
        self._conn = conn
        self._owned = None
        self._lock = threading.Lock()

    def _execute(self, conn, sql, args):
        if conn is not None:
            return conn.execute(sql, args).fetchall()
        if self._conn is not None:
            return self._conn.execute(sql, args).fetchall()
        with self._lock:
            if self._owned is None or self._owned.closed:
                self._owned = psycopg.connect(self._conninfo, autocommit=True)
            return self._owned.execute(sql, args).fetchall()

    def send(self, queue, payload, *, headers=None, priority=None, delay_ms=0, dedup_key=None, conn=None):
        """Writes one message and returns its id. headers: dict of strings;
        priority: None for the queue's; dedup_key: while a message with the
        same key is queued or in flight, send returns its id and writes
        nothing."""
        args = (_check.queue(queue), _check.payload(payload), _check.headers(headers),
                _check.priority(priority), _check.delay(delay_ms), _check.dedup_key(dedup_key))
        rows = self._execute(conn, "SELECT %s.pgflow_send(%%s::text, %%s::jsonb, %%s::jsonb, %%s::integer, "
                             "%%s::bigint, %%s::text)" % self._s, args)
        return rows[0][0]

    def send_batch(self, queue, payloads, *, headers=None, priority=None, delay_ms=0, conn=None):
        """Writes many messages to one queue in one statement; returns their
        ids in input order. headers: one dict per payload, or None."""
        _check.queue(queue)
        if not isinstance(payloads, (list, tuple)):
            raise InputError("payloads", "payloads must be a list")
        if not payloads:
            return []
        bodies = [_check.payload(p, "payloads[%d]" % i) for i, p in enumerate(payloads)]
        heads = None
        if headers is not None:
            if not isinstance(headers, (list, tuple)) or len(headers) != len(payloads):
                raise InputError("headers", "headers must be a list with one dict per payload")
            heads = [_check.headers(h, "headers[%d]" % i) for i, h in enumerate(headers)]
        rows = self._execute(conn, "SELECT id FROM %s.pgflow_send_batch(%%s::text, %%s::text[]::jsonb[], "
                             "%%s::text[]::jsonb[], %%s::integer, %%s::bigint) AS id" % self._s,
                             (queue, bodies, heads, _check.priority(priority), _check.delay(delay_ms)))
        return [r[0] for r in rows]

    def publish(self, topic, payload, *, headers=None, priority=None, delay_ms=0,
                allow_no_subscribers=False, conn=None):
        """Writes one message to every queue subscribed to topic, in one
        statement; returns [(queue, id)]. A topic without subscribers is an
        error unless allow_no_subscribers."""
        rows = self._execute(conn, "SELECT queue, id FROM %s.pgflow_publish(%%s::text, %%s::jsonb, %%s::jsonb, "
                             "%%s::integer, %%s::bigint, %%s::boolean)" % self._s,
                             (_check.queue(topic, "topic"), _check.payload(payload), _check.headers(headers),
                              _check.priority(priority), _check.delay(delay_ms), allow_no_subscribers is True))
        return [(r[0], r[1]) for r in rows]

    def subscribe(self, topic, queue, *, conn=None):
        """Makes queue (created if missing) receive every later publish to
        topic. Returns True when the subscription is new."""
        return self._execute(conn, "SELECT %s.pgflow_subscribe(%%s::text, %%s::text)" % self._s,
                             (_check.queue(topic, "topic"), _check.queue(queue)))[0][0]

    def unsubscribe(self, topic, queue, *, conn=None):
        """Ends a subscription; messages already published stay. Returns True
        when there was one."""
        return self._execute(conn, "SELECT %s.pgflow_unsubscribe(%%s::text, %%s::text)" % self._s,
                             (_check.queue(topic, "topic"), _check.queue(queue)))[0][0]

    def close(self):
        """Closes the producer's own connection (a connection passed in
        stays open)."""
        with self._lock:
            if self._owned is not None:
                self._owned.close()
                self._owned = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

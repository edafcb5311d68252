"""Worker: a consumer of one queue with a pool of handler threads, built on
pgflow's SQL functions: pgflow_claim hands out messages with a lease and a
claim token, and only that token can ack, fail, extend or release the
delivery.

Threads, not asyncio: psycopg's blocking API on plain threads is what most
Python services can call from anywhere, and handlers may block. One loop
thread claims up to the free capacity (concurrency running handlers plus
prefetch buffered messages) and sleeps until a NOTIFY for the queue, a
finished handler or the poll interval wakes it; a pool of `concurrency`
threads runs handlers; one timer thread extends the lease of every held
message every third of the lease and returns expired leases
(pgflow_rescue); one listener thread LISTENs. Handlers that raise go to
pgflow_fail, which retries with the queue's backoff or dead-letters."""

import logging
import os
import queue as _queue
import secrets
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from . import _check
from .errors import InputError, LeaseLostError, failure

log = logging.getLogger("pgflow")


@dataclass
class Message:
    """One delivery. attempt is this delivery's number (1 for the first),
    retry_count the failed deliveries before it, max_retries the queue's
    limit. cancelled is set when the worker gives up on the delivery (its
    lease was lost, or stop timed out); reason says which. Long handlers
    should check it."""

    id: int
    claim_token: int
    queue: str
    payload: object
    headers: dict
    priority: int
    attempt: int
    retry_count: int
    max_retries: int
    created_at: object
    locked_until: object
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    reason: str = field(default=None, compare=False)


@dataclass
class StopResult:
    released: int  # claimed messages no handler started, handed back
    abandoned: int  # running handlers given up on at the timeout; their messages handed back


class _Entry:
    __slots__ = ("message", "started", "settling", "acked_tx", "done", "lost", "released")

    def __init__(self, message):
        self.message = message
        self.started = self.settling = self.acked_tx = self.done = self.lost = self.released = False


class _Pool:
    """A few autocommit connections shared by the worker's threads; a
    connection that fails is discarded and reopened on next use."""

    def __init__(self, conninfo, size):
        self._conninfo = conninfo
        self._idle = _queue.LifoQueue()
        self._slots = threading.Semaphore(size)
        self._closed = False

    @contextmanager
    def connection(self):
        self._slots.acquire()
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except _queue.Empty:
                conn = psycopg.connect(self._conninfo, autocommit=True)
            yield conn
        except BaseException:
            if conn is not None:
                conn.close()
                conn = None
            raise
        finally:
            if conn is not None:
                if self._closed or conn.broken:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    def query(self, sql, args=()):
        with self.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def close(self):
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except _queue.Empty:
                return


class Worker:
    """Consumes one queue.

    handler(message) returns to acknowledge the message; raising fails the
    attempt (PermanentError: to the DLQ at once; RetryAfter: retry after its
    delay; anything else: the queue's backoff, the DLQ when out of retries).

    Options: schema ("public"); concurrency (1) handler threads; prefetch
    (0) messages claimed ahead of a free handler; batch_size (concurrency +
    prefetch) most messages per claim; lease_ms (30000) lease per claim and
    per extension; poll_interval_ms (1000) longest sleep without a
    notification; listen (True) LISTEN for new messages;
    rescue_interval_ms (1000, 0: never) how often to return messages whose
    lease ran out; consumer_id (host:pid:random); on_settle(message,
    outcome) after each delivery, outcome one of "ack", "retry", "dead",
    "lost" (the lease was lost, so the delivery settled nothing) and
    "released" (handed back by stop); pool_size (min(concurrency, 8) + 1)
    connections besides the listener's."""

    def __init__(self, conninfo, queue, handler, *, schema="public", concurrency=1, prefetch=0, batch_size=None,
                 lease_ms=30000, poll_interval_ms=1000, listen=True, rescue_interval_ms=1000, consumer_id=None,
                 on_settle=None, pool_size=None):
        if not conninfo or not isinstance(conninfo, str):
            raise InputError("conninfo", "conninfo must be a non-empty string")
        self._conninfo = conninfo
        self._schema = schema
        self._s = _check.quoted_schema(schema)
        self._queue = _check.queue(queue)
        if not callable(handler):
            raise InputError("handler", "handler must be callable")
        self._handler = handler
        self._concurrency = _check.positive(concurrency, "concurrency", 10000)
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or not 0 <= prefetch <= 10000:
            raise InputError("prefetch", "prefetch must be an integer in [0, 10000], not %r" % (prefetch,))
        self._prefetch = prefetch
        self._batch = _check.positive(batch_size if batch_size is not None else concurrency + prefetch,
                                      "batch_size", 10000)
        self._lease_ms = _check.positive(lease_ms, "lease_ms")
        self._poll = _check.positive(poll_interval_ms, "poll_interval_ms") / 1000.0
        if not isinstance(rescue_interval_ms, int) or isinstance(rescue_interval_ms, bool) or rescue_interval_ms < 0:
            raise InputError("rescue_interval_ms", "rescue_interval_ms must be a non-negative integer")
        self._rescue = rescue_interval_ms / 1000.0
        self._listen = listen is not False
        if consumer_id is None:
            consumer_id = "%s:%d:%s" % (socket.gethostname(), os.getpid(), secrets.token_hex(2))
        if not isinstance(consumer_id, str) or not 1 <= len(consumer_id) <= 256:
            raise InputError("consumer_id", "consumer_id must be a string of 1-256 characters")
        self.consumer_id = consumer_id
        self._on_settle = on_settle or (lambda m, outcome: None)
        self._pool = _Pool(conninfo, pool_size or min(self._concurrency, 8) + 1)

        self._mu = threading.Lock()
        self._held = {}  # id -> _Entry
        self._buffer = []  # entries claimed, not started
        self._running = 0
        self._idle = threading.Condition(self._mu)
        # _listen_conn numbers the listener's connection while it LISTENs
        # (None between connections); _caught_up says a claim issued since
        # that LISTEN found the queue drained. wait_listening waits on
        # _listening for it.
        self._listen_conn = None
        self._listen_conns = 0
        self._caught_up = False
        self._listening = threading.Condition(self._mu)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads = []
        self._executor = None
        self._stop_result = None
        self._stop_r = self._stop_w = None
        self._stop_lock = threading.Lock()
        self._started = False

    # -- lifecycle --

    def start(self):
        """Starts claiming and returns at once. Errors on the way are
        retried and logged to the "pgflow" logger."""
        if self._started:
            raise RuntimeError("pgflow: worker already started")
        self._started = True
        # A pipe that becomes readable at stop, for the listener's select.
        self._stop_r, self._stop_w = os.pipe()
        self._executor = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="pgflow-handler")
        for name, target in (("loop", self._loop), ("timer", self._timer), ("listen", self._listener)):
            if name == "listen" and not self._listen:
                continue
            t = threading.Thread(target=target, name="pgflow-" + name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout=30.0):
        """Stops claiming, hands back the claimed messages no handler
        started (pgflow_release: not a failed attempt), and waits up to
        timeout seconds for running handlers to finish and settle. Handlers
        still running then are cancelled (message.cancelled is set) and
        their messages handed back. Returns a StopResult; calling it again
        returns the same."""
        with self._stop_lock:
            if self._stop_result is None:
                self._stop_result = self._stop(timeout)
            return self._stop_result

    def _stop(self, timeout):
        self._stopping.set()
        with self._mu:
            self._listening.notify_all()
        if not self._started:
            self._pool.close()
            return StopResult(released=0, abandoned=0)
        self._wake.set()
        os.write(self._stop_w, b"x")  # wakes the listener's select
        for t in self._threads:
            if t.name == "pgflow-loop":
                t.join()
        with self._mu:
            unstarted = self._buffer[:]
            self._buffer.clear()
            for e in unstarted:
                e.released = True
                del self._held[e.message.id]
        released = self._release(unstarted)
        for e in unstarted:
            self._settled(e.message, "released")
        abandoned = 0
        with self._mu:
            deadline = time.monotonic() + timeout
            while self._running > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            running = [e for e in self._held.values() if e.started and not e.done]
            for e in running:
                e.released = True
                e.message.reason = "pgflow: worker stopped"
                e.message.cancelled.set()
                del self._held[e.message.id]
        if running:
            abandoned = len(running)
            self._release(running)
        for t in self._threads:
            t.join()
        # Abandoned handler threads are not waited for; their outcome is
        # "released" whenever they return.
        self._executor.shutdown(wait=False)
        self._pool.close()
        os.close(self._stop_r)
        os.close(self._stop_w)
        return StopResult(released=released, abandoned=abandoned)

    def wait_listening(self, timeout=None):
        """Waits until the worker LISTENs for new messages and a claim made
        since found the queue drained: from then on a message sent to the
        queue wakes the worker at once, without waiting for the poll
        interval. After a lost LISTEN connection it waits for the next
        LISTEN. Returns True then, or False when timeout seconds passed, the
        worker stopped, or it was made with listen=False."""
        if not self._listen:
            return False
        with self._mu:
            self._listening.wait_for(lambda: self._caught_up or self._stopping.is_set(), timeout)
            return self._caught_up and not self._stopping.is_set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def ack_tx(self, conn, message):
        """Acknowledges message in the caller's transaction (conn: a psycopg
        connection in a transaction), so that the handler's writes, messages
        it sends with conn=conn included, and the acknowledgement commit or
        roll back together. Raises LeaseLostError, and the caller must roll
        back, when the delivery no longer holds the message (its lease ran
        out and the message went to another consumer). The worker's own
        acknowledgement after the handler returns then finds nothing left to
        do."""
        with self._mu:
            e = self._held.get(getattr(message, "id", None))
        if e is None or e.message is not message:
            raise InputError("message", "ack_tx takes a message this worker is handling")
        if conn is None or (conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
            raise InputError("conn", "ack_tx needs a connection in a transaction")
        ok = conn.execute("SELECT %s.pgflow_ack(%%s::bigint, %%s::bigint)" % self._s,
                          (message.id, message.claim_token)).fetchone()[0]
        if not ok:
            raise LeaseLostError(message.id)
        with self._mu:
            e.acked_tx = True

    # -- claiming and running --

    def _loop(self):
        failures = 0
        while not self._stopping.is_set():
            with self._mu:
                free = self._concurrency + self._prefetch - len(self._held)
                listen_conn = self._listen_conn
            if free > 0:
                want = min(free, self._batch)
                self._wake.clear()
                try:
                    rows = self._pool.query(
                        "SELECT id, claim_token, payload, headers, priority, attempt, retry_count, max_retries, "
                        "created_at, locked_until FROM %s.pgflow_claim(%%s::text, %%s::integer, %%s::integer, "
                        "%%s::text)" % self._s, (self._queue, want, self._lease_ms, self.consumer_id))
                    failures = 0
                except Exception as e:  # noqa: BLE001 - any failure: back off and retry
                    failures += 1
                    log.warning("pgflow: claim from %s failed: %s", self._queue, e)
                    self._stopping.wait(min(0.1 * 2 ** min(failures, 6), 5.0))
                    continue
                with self._mu:
                    for r in rows:
                        e = _Entry(Message(r[0], r[1], self._queue, r[2], r[3] or {}, r[4], r[5], r[6], r[7], r[8],
                                           r[9]))
                        self._held[e.message.id] = e
                        self._buffer.append(e)
                    if self._stopping.is_set():
                        break  # stop releases the buffer
                    self._dispatch_locked()
                if len(rows) == want:
                    continue  # there may be more
                with self._mu:
                    # A claim issued after the LISTEN returned found the queue
                    # drained: anything sent from now on comes with a
                    # notification.
                    if listen_conn is not None and listen_conn == self._listen_conn:
                        self._caught_up = True
                        self._listening.notify_all()
            self._wake.wait(self._poll)

    def _dispatch_locked(self):
        while self._running < self._concurrency and self._buffer and not self._stopping.is_set():
            e = self._buffer.pop(0)
            e.started = True
            self._running += 1
            self._executor.submit(self._execute, e)

    def _execute(self, e):
        exc = None
        try:
            self._handler(e.message)
        except Exception as err:  # noqa: BLE001 - a handler's failure is the message's
            exc = err
        with self._mu:
            e.settling = True  # from here a lease found gone is this settle's doing
        try:
            if e.released:
                outcome = "released"
            elif e.lost:
                outcome = "lost"
            else:
                outcome = self._settle(e, exc)
            self._settled(e.message, outcome)
        except Exception as err:  # noqa: BLE001
            # The message stays leased and comes back when its lease runs out.
            log.warning("pgflow: settling message %d of %s failed: %s", e.message.id, self._queue, err)
        with self._mu:
            e.done = True
            self._held.pop(e.message.id, None)
            self._running -= 1
            if self._running == 0:
                self._idle.notify_all()
            self._dispatch_locked()
        self._wake.set()

    def _settle(self, e, exc):
        m = e.message
        if exc is None:
            ok = self._pool.query("SELECT %s.pgflow_ack(%%s::bigint, %%s::bigint)" % self._s,
                                  (m.id, m.claim_token))[0][0]
            return "ack" if ok or e.acked_tx else "lost"
        text, delay, permanent = failure(exc)
        outcome = self._pool.query("SELECT %s.pgflow_fail(%%s::bigint, %%s::bigint, %%s::text, %%s::integer, "
                                   "%%s::boolean)" % self._s, (m.id, m.claim_token, text, delay, permanent))[0][0]
        # After an ack_tx whose transaction committed, the message is gone.
        return outcome or ("ack" if e.acked_tx else "lost")

    def _settled(self, message, outcome):
        try:
            self._on_settle(message, outcome)
        except Exception:  # noqa: BLE001
            log.exception("pgflow: on_settle raised")

    def _release(self, entries):
        if not entries:
            return 0
        try:
            return self._pool.query(
                "SELECT count(*) FILTER (WHERE %s.pgflow_release(t.id, t.token))::integer "
                "FROM unnest(%%s::bigint[], %%s::bigint[]) AS t(id, token)" % self._s,
                ([e.message.id for e in entries], [e.message.claim_token for e in entries]))[0][0]
        except Exception as err:  # noqa: BLE001
            log.warning("pgflow: releasing %d messages of %s failed; they come back when their leases run out: %s",
                        len(entries), self._queue, err)
            return 0

    # -- heartbeat and rescue --

    def _timer(self):
        beat = max(self._lease_ms / 3000.0, 0.001)
        next_beat = time.monotonic() + beat
        next_rescue = time.monotonic() + self._rescue if self._rescue > 0 else None
        while True:
            now = time.monotonic()
            wait = next_beat - now
            if next_rescue is not None:
                wait = min(wait, next_rescue - now)
            if self._stopping.wait(max(wait, 0)):
                return
            now = time.monotonic()
            if now >= next_beat:
                self._extend()
                next_beat = time.monotonic() + beat
            if next_rescue is not None and now >= next_rescue:
                self._rescue_expired()
                next_rescue = time.monotonic() + self._rescue

    def _extend(self):
        """One statement extends every held lease; a message whose token no
        longer holds it (its lease ran out and it was rescued) is dropped,
        and its handler's message.cancelled is set."""
        with self._mu:
            entries = list(self._held.values())
        if not entries:
            return
        try:
            rows = self._pool.query(
                "SELECT t.id, %s.pgflow_extend(t.id, t.token, %%s::integer) "
                "FROM unnest(%%s::bigint[], %%s::bigint[]) AS t(id, token)" % self._s,
                (self._lease_ms, [e.message.id for e in entries], [e.message.claim_token for e in entries]))
        except Exception as err:  # noqa: BLE001
            log.warning("pgflow: extending leases on %s failed: %s", self._queue, err)
            return
        gone = {r[0] for r in rows if not r[1]}
        lost, dropped = [], []
        with self._mu:
            for e in entries:
                # A message settled since the snapshot is gone, not lost.
                if e.message.id not in gone or e.settling or e.acked_tx or e.released:
                    continue
                lost.append(e)
                e.lost = True
                e.message.reason = "pgflow: lease lost"
                e.message.cancelled.set()
                if not e.started:
                    self._buffer.remove(e)
                    del self._held[e.message.id]
                    dropped.append(e)
        for e in dropped:
            self._settled(e.message, "lost")
        if lost:
            log.warning("pgflow: lease of %d messages of %s lost", len(lost), self._queue)

    def _rescue_expired(self):
        """Messages whose lease ran out, of any queue of the schema, become
        pending again (or dead, out of retries), as with the Go consumers:
        any live consumer rescues a crashed one's messages."""
        try:
            self._pool.query("SELECT count(*) FROM %s.pgflow_rescue(100)" % self._s)
        except Exception as err:  # noqa: BLE001
            log.warning("pgflow: rescuing expired leases failed: %s", err)

    # -- wake-ups --

    def _listener(self):
        """Holds one connection that LISTENs; reconnects with backoff when it
        is lost, and wakes the loop then (notifications sent meanwhile are
        lost). Polling covers the gaps."""
        failures = 0
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute('LISTEN "%s"' % _check.channel(self._schema))
                    failures = 0
                    with self._mu:
                        self._listen_conns += 1
                        self._listen_conn = self._listen_conns
                    self._wake.set()
                    pg = conn.pgconn
                    while not self._stopping.is_set():
                        ready, _, _ = select.select([pg.socket, self._stop_r], [], [])
                        if pg.socket not in ready:
                            continue
                        pg.consume_input()
                        if pg.status != psycopg.pq.ConnStatus.OK:
                            raise psycopg.OperationalError("LISTEN connection lost")
                        while True:
                            n = pg.notifies()
                            if n is None:
                                break
                            if n.extra.decode() == self._queue:
                                self._wake.set()
            except Exception as err:  # noqa: BLE001
                with self._mu:
                    self._listen_conn = None
                    self._caught_up = False
                if self._stopping.is_set():
                    return
                failures += 1
                log.warning("pgflow: LISTEN connection lost; reconnecting: %s", err)
                self._stopping.wait(min(0.1 * 2 ** min(failures, 7), 10.0))

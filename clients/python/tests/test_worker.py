import threading
import time
import unittest

import psycopg

from pgflow import InputError, LeaseLostError, PermanentError, Producer, RetryAfter, StopResult, Worker

from .helpers import DATABASE_URL, Outcomes, SchemaTest, queue_name, wait_until


class WorkerTest(SchemaTest):
    def setUp(self):
        self.p = Producer(DATABASE_URL, schema=self.schema)
        self.addCleanup(self.p.close)

    def worker(self, queue, handler, **opts):
        """Starts a worker; returns it and its Outcomes. Stopped at cleanup."""
        outcomes = Outcomes()
        opts.setdefault("poll_interval_ms", 200)
        w = Worker(DATABASE_URL, queue, handler, schema=self.schema, on_settle=outcomes, **opts).start()
        self.addCleanup(w.stop, 1.0)
        return w, outcomes

    def test_send_claim_ack(self):
        q = queue_name()
        mid = self.p.send(q, {"hello": "world"}, headers={"traceparent": "tp-1"}, priority=3)
        seen = []
        w, outcomes = self.worker(q, seen.append)
        self.assertEqual([o[1] for o in outcomes.wait(1)], ["ack"])
        w.stop()
        m = seen[0]
        self.assertEqual((m.id, m.queue, m.payload, m.headers, m.priority), (mid, q, {"hello": "world"},
                                                                             {"traceparent": "tp-1"}, 3))
        self.assertEqual((m.attempt, m.retry_count, m.max_retries), (1, 0, 3))
        self.assertIsInstance(m.claim_token, int)
        self.assertEqual(self.live(q), [])

    def test_with_block_starts_and_stops(self):
        q = queue_name()
        ids = self.p.send_batch(q, [1, 2])
        outcomes = Outcomes()
        with Worker(DATABASE_URL, q, lambda m: None, schema=self.schema, on_settle=outcomes, listen=False,
                    poll_interval_ms=50) as w:
            self.assertEqual(sorted(o[0] for o in outcomes.wait(2)), ids)
        self.assertEqual(w.stop(), StopResult(released=0, abandoned=0))
        self.assertEqual(self.live(q), [])

    def test_notify_wakes_idle_worker(self):
        q = queue_name()
        # A ten-minute poll interval: only the send's NOTIFY can wake the
        # worker within the wait's timeout.
        w, outcomes = self.worker(q, lambda m: None, poll_interval_ms=600000)
        # Once the worker listens, a claim made after the LISTEN found
        # nothing: it now sleeps unless the send's notification wakes it.
        self.assertTrue(w.wait_listening(10), "the worker did not LISTEN")
        self.p.send(q, {"wake": True})
        self.assertEqual([o[1] for o in outcomes.wait(1, timeout=10)], ["ack"])

    def test_wait_listening_false_without_listen_or_after_stop(self):
        q = queue_name()
        quiet = Worker(DATABASE_URL, q, lambda m: None, schema=self.schema, listen=False)
        self.assertFalse(quiet.wait_listening(5))
        quiet.stop()
        w = Worker(DATABASE_URL, q, lambda m: None, schema=self.schema)
        w.stop()
        self.assertFalse(w.wait_listening(5))

    def test_killed_listen_connection_listens_again(self):
        q = queue_name()
        w, outcomes = self.worker(q, lambda m: None, poll_interval_ms=600000)

        def listeners():
            return [r[0] for r in self.db.execute("SELECT pid FROM pg_stat_activity WHERE query = %s",
                                                  ('LISTEN "pgflow.%s"' % self.schema,)).fetchall()]

        self.assertTrue(w.wait_listening(10), "the worker did not LISTEN")
        # The worker's listener is among these (with, briefly, those of
        # workers of earlier tests that are still exiting): end them all.
        old = listeners()
        self.assertTrue(old, "no backend runs the worker's LISTEN")
        self.db.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (old,))
        wait_until(lambda: [p for p in listeners() if p not in old], "the worker to LISTEN on a new connection")
        # The worker saw its connection go before it listened again, so this
        # waits for a claim after the new LISTEN to find nothing. With a
        # ten-minute poll interval only a notification on the new connection
        # wakes the worker in time.
        self.assertTrue(w.wait_listening(10), "the worker did not LISTEN again")
        self.p.send(q, {"wake": True})
        self.assertEqual([o[1] for o in outcomes.wait(1, timeout=10)], ["ack"])

    def test_retries_with_backoff_then_dlq_with_every_error(self):
        q = queue_name()
        self.declare(q, max_retries=2, retry_delay_ms=100)
        mid = self.p.send(q, {"poison": True}, headers={"traceparent": "tp-2"})
        attempts = []

        def handler(m):
            attempts.append((m.attempt, m.retry_count, time.monotonic()))
            raise RuntimeError("boom %d" % m.attempt)

        w, outcomes = self.worker(q, handler)
        self.assertEqual([o[1] for o in outcomes.wait(3)], ["retry", "retry", "dead"])
        self.assertEqual([a[:2] for a in attempts], [(1, 0), (2, 1), (3, 2)])
        # Backoff: retry n waits retry_delay * 2^(n-1), drawn from [d/2, d].
        self.assertGreaterEqual(attempts[1][2] - attempts[0][2], 0.045)
        self.assertGreaterEqual(attempts[2][2] - attempts[1][2], 0.095)
        (d,) = self.dead(q)
        self.assertEqual(d[0], mid)
        self.assertEqual(d[1], "boom 3")
        self.assertEqual([e["error"] for e in d[2]], ["boom 1", "boom 2", "boom 3"])
        self.assertEqual(d[3:], (3, {"poison": True}, {"traceparent": "tp-2"}))
        self.assertEqual(self.live(q), [])

    def test_permanent_and_retry_after(self):
        q = queue_name()
        self.declare(q, max_retries=5, retry_delay_ms=600000)
        perm = self.p.send(q, {"kind": "perm"})
        later = self.p.send(q, {"kind": "later"})

        def handler(m):
            if m.payload["kind"] == "perm":
                raise PermanentError("malformed order")
            if m.attempt == 1:
                raise RetryAfter(50, "busy")  # else the queue's ten minutes

        w, outcomes = self.worker(q, handler, concurrency=2)
        got = outcomes.wait(3)
        self.assertEqual([o[1] for o in got if o[0] == perm], ["dead"])
        self.assertEqual([(o[1], o[2]) for o in got if o[0] == later], [("retry", 1), ("ack", 2)])
        (d,) = self.dead(q)
        self.assertEqual((d[0], d[1], d[3]), (perm, "malformed order", 1))

    def test_heartbeat_keeps_a_long_handler_the_only_delivery(self):
        q = queue_name()
        self.p.send(q, {"slow": True})
        release = threading.Event()
        started = threading.Event()
        deliveries = []

        def slow(m):
            deliveries.append(m.id)
            started.set()
            release.wait(20)

        # Lease 1 s: without extension the rescuers (both workers, every
        # 100 ms) would hand the message to the other worker after it.
        w, outcomes = self.worker(q, slow, lease_ms=1000, rescue_interval_ms=100, consumer_id="slow")
        self.assertTrue(started.wait(30))
        # The other worker starts once the slow one holds the message, so
        # it can only get it by taking over a lease that ran out.
        self.worker(q, deliveries.append, lease_ms=1000, rescue_interval_ms=100, poll_interval_ms=50,
                    consumer_id="other")
        # Watch the lease move forward until it ends more than one lease
        # length later than the first one did.
        first = self.live(q)[0][5]

        def extended():
            (row,) = self.live(q)
            self.assertEqual((row[1], row[2], row[4]), ("processing", 1, "slow"))
            return (row[5] - first).total_seconds() > 1.2

        wait_until(extended, "the lease to end more than 1.2 s later than the first one", interval=0.05)
        release.set()
        self.assertEqual([o[1] for o in outcomes.wait(1)], ["ack"])
        self.assertEqual(len(deliveries), 1)
        self.assertEqual(self.live(q), [])
        self.assertEqual(self.dead(q), [])

    def test_lost_lease_cancels_handler_and_acks_nothing(self):
        q = queue_name()
        self.p.send(q, {"n": 1})
        reasons = []

        def handler(m):
            if m.attempt > 1:
                return
            # The lease runs out (as after a long pause of this process) and
            # a rescuer hands the message back: the next heartbeat finds the
            # token gone.
            # One transaction: the row lock keeps a heartbeat from extending
            # the lease in between.
            with self.db.transaction():
                self.rows("UPDATE {s}.pgflow_messages SET locked_until = now() - interval '1 second' "
                          "WHERE id = %s RETURNING 1", (m.id,))
                self.rows("SELECT count(*) FROM {s}.pgflow_rescue(10)")
            self.assertTrue(m.cancelled.wait(10))
            reasons.append(m.reason)

        w, outcomes = self.worker(q, handler, lease_ms=600, rescue_interval_ms=0)
        self.assertEqual([(o[1], o[2]) for o in outcomes.wait(2)], [("lost", 1), ("ack", 2)])
        self.assertEqual(reasons, ["pgflow: lease lost"])
        self.assertEqual(self.live(q), [])

    def test_ack_tx_commits_or_rolls_back_with_the_handler_transaction(self):
        q, out = queue_name(), queue_name("out")
        self.declare(q, max_retries=3, retry_delay_ms=10)
        mid = self.p.send(q, {"n": 1})
        holder = {}

        def handler(m):
            with psycopg.connect(DATABASE_URL) as conn:
                self.p.send(out, {"from": m.id, "attempt": m.attempt}, conn=conn)
                holder["w"].ack_tx(conn, m)
                if m.attempt == 1:
                    # The first attempt rolls back: neither the forward nor
                    # the acknowledgement happened, and the attempt fails.
                    conn.rollback()
                    raise RuntimeError("rolled back")
            # (the with block commits)

        holder["w"], outcomes = self.worker(q, handler)
        self.assertEqual([(o[1], o[2]) for o in outcomes.wait(2)], [("retry", 1), ("ack", 2)])
        self.assertEqual(self.live(q), [])
        self.assertEqual(self.rows("SELECT payload FROM {s}.pgflow_messages WHERE queue_name = %s", (out,)),
                         [({"from": mid, "attempt": 2},)])

    def test_ack_tx_after_lost_lease_raises(self):
        q = queue_name()
        self.p.send(q, {"n": 1})
        holder, errors = {}, []

        def handler(m):
            with psycopg.connect(DATABASE_URL) as conn:
                if m.attempt == 1:
                    with self.db.transaction():
                        self.rows("UPDATE {s}.pgflow_messages SET locked_until = now() - interval '1 second' "
                                  "WHERE id = %s RETURNING 1", (m.id,))
                        self.rows("SELECT count(*) FROM {s}.pgflow_rescue(10)")
                try:
                    holder["w"].ack_tx(conn, m)
                except LeaseLostError as err:
                    errors.append(err)
                    raise  # the with block rolls back

        holder["w"], outcomes = self.worker(q, handler, rescue_interval_ms=0)
        self.assertEqual([(o[1], o[2]) for o in outcomes.wait(2)], [("lost", 1), ("ack", 2)])
        self.assertEqual(len(errors), 1)
        with self.assertRaises(InputError):
            holder["w"].ack_tx(None, object())

    def test_ack_tx_in_transaction_block_of_autocommit_connection(self):
        q, out = queue_name(), queue_name("out")
        self.p.send(q, {"n": 1})
        holder = {}

        def handler(m):
            with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
                with self.assertRaises(InputError):
                    holder["w"].ack_tx(conn, m)  # autocommit, no transaction: refused
                with conn.transaction():
                    self.p.send(out, {"from": m.id}, conn=conn)
                    holder["w"].ack_tx(conn, m)

        holder["w"], outcomes = self.worker(q, handler)
        self.assertEqual([o[1] for o in outcomes.wait(1)], ["ack"])
        self.assertEqual(self.live(q), [])
        self.assertEqual(len(self.rows("SELECT 1 FROM {s}.pgflow_messages WHERE queue_name = %s", (out,))), 1)

    def test_stop_releases_unstarted_and_waits_for_running(self):
        q = queue_name()
        ids = self.p.send_batch(q, [1, 2, 3])
        running = threading.Event()
        finish = threading.Event()

        def handler(m):
            running.set()
            finish.wait(20)

        w, outcomes = self.worker(q, handler, concurrency=1, prefetch=2)
        self.assertTrue(running.wait(10))
        result = []
        stopper = threading.Thread(target=lambda: result.append(w.stop(timeout=20)))
        stopper.start()
        wait_until(lambda: [r[1] for r in self.live(q)].count("pending") == 2, "two released messages")
        rows = self.live(q)
        self.assertEqual([(r[0], r[1]) for r in rows], [(ids[0], "processing"), (ids[1], "pending"),
                                                        (ids[2], "pending")])
        self.assertEqual([r[3] for r in rows], [0, 0, 0], "a release is not a failed attempt")
        finish.set()
        stopper.join()
        self.assertEqual(result, [StopResult(released=2, abandoned=0)])
        self.assertEqual([(o[0], o[1]) for o in outcomes.items],
                         [(ids[1], "released"), (ids[2], "released"), (ids[0], "ack")])
        self.assertEqual([r[0] for r in self.live(q)], [ids[1], ids[2]])
        self.assertEqual(w.stop(), StopResult(released=2, abandoned=0))

    def test_stop_timeout_cancels_running_handler_and_hands_back(self):
        q = queue_name()
        mid = self.p.send(q, {"stuck": True})
        running = threading.Event()
        reasons = []

        def handler(m):
            running.set()
            m.cancelled.wait(20)
            reasons.append(m.reason)

        w, outcomes = self.worker(q, handler)
        self.assertTrue(running.wait(10))
        self.assertEqual(w.stop(timeout=0.05), StopResult(released=0, abandoned=1))
        self.assertEqual(outcomes.wait(1)[0][:2], (mid, "released"))
        self.assertEqual(reasons, ["pgflow: worker stopped"])
        (row,) = self.live(q)
        self.assertEqual((row[0], row[1], row[3]), (mid, "pending", 0))

    def test_concurrency_runs_that_many_at_once_and_never_more(self):
        q = queue_name()
        self.p.send_batch(q, [{"i": i} for i in range(12)])
        lock = threading.Lock()
        state = {"now": 0, "peak": 0}
        barrier = threading.Barrier(4)

        def handler(m):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            if m.payload["i"] < 4:
                barrier.wait(10)  # the first four wait for each other: four run at once
            time.sleep(0.005)  # the handler's work, so that later handlers overlap
            with lock:
                state["now"] -= 1

        w, outcomes = self.worker(q, handler, concurrency=4, batch_size=3)
        got = outcomes.wait(12)
        self.assertEqual(state["peak"], 4)
        self.assertEqual(len({o[0] for o in got}), 12)
        self.assertTrue(all(o[1] == "ack" for o in got))

    def test_two_workers_share_a_queue(self):
        q = queue_name()
        n = 40
        self.p.send_batch(q, [{"i": i} for i in range(n)])
        seen = []
        lock = threading.Lock()
        done = threading.Event()

        def handler(m):
            with lock:
                seen.append(m.payload["i"])
                if len(seen) == n:
                    done.set()

        self.worker(q, handler, concurrency=3, consumer_id="a")
        self.worker(q, handler, concurrency=3, consumer_id="b")
        self.assertTrue(done.wait(20))
        self.assertEqual(sorted(seen), list(range(n)))

    def test_bad_options(self):
        base = dict(conninfo=DATABASE_URL, queue="q", handler=lambda m: None, schema=self.schema)
        for bad in [dict(queue="no spaces"), dict(queue=None), dict(handler="x"), dict(concurrency=0),
                    dict(concurrency=1.5), dict(lease_ms=0), dict(prefetch=-1), dict(batch_size=0),
                    dict(poll_interval_ms=0), dict(schema="x;drop"), dict(rescue_interval_ms=-1),
                    dict(consumer_id=""), dict(consumer_id="x" * 257), dict(conninfo="")]:
            with self.subTest(bad=bad), self.assertRaises(InputError):
                Worker(**dict(base, **bad))
        with self.assertRaises(InputError):
            RetryAfter(-1)
        self.assertEqual(Worker(**base).stop(), StopResult(released=0, abandoned=0), "stop before start")


if __name__ == "__main__":
    unittest.main()

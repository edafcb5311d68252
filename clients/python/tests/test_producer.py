import unittest

import psycopg

from pgflow import InputError, Producer

from .helpers import DATABASE_URL, SchemaTest, queue_name


class ProducerTest(SchemaTest):
    def setUp(self):
        self.p = Producer(DATABASE_URL, schema=self.schema)
        self.addCleanup(self.p.close)

    def msgs(self, queue):
        return self.rows("SELECT id, payload, headers, priority, visible_at > now() FROM {s}.pgflow_messages "
                         "WHERE queue_name = %s ORDER BY id", (queue,))

    def test_send_writes_payload_headers_priority_delay_and_dedup(self):
        q = queue_name()
        mid = self.p.send(q, {"n": 1}, headers={"traceparent": "00-abc-def-01"}, priority=5)
        self.assertIsInstance(mid, int)
        delayed = self.p.send(q, "later", delay_ms=60000)
        d1 = self.p.send(q, [1, 2], dedup_key="k")
        self.assertEqual(self.p.send(q, [3], dedup_key="k"), d1, "a queued dedup key returns the first id")
        got = self.msgs(q)
        self.assertEqual([r[0] for r in got], [mid, delayed, d1])
        self.assertEqual(got[0][1:4], ({"n": 1}, {"traceparent": "00-abc-def-01"}, 5))
        self.assertEqual((got[1][1], got[1][4]), ("later", True))
        self.assertEqual(got[2][1], [1, 2])

    def test_send_batch_returns_ids_in_input_order(self):
        q = queue_name()
        ids = self.p.send_batch(q, [{"i": 0}, {"i": 1}, {"i": 2}], headers=[{"h": "a"}, {}, {"h": "c"}])
        by_id = {r[0]: r for r in self.msgs(q)}
        self.assertEqual([by_id[i][1]["i"] for i in ids], [0, 1, 2])
        self.assertEqual(by_id[ids[0]][2], {"h": "a"})
        self.assertEqual(by_id[ids[2]][2], {"h": "c"})
        self.assertEqual(self.p.send_batch(q, []), [])

    def test_send_in_caller_transaction(self):
        q = queue_name()
        with psycopg.connect(DATABASE_URL) as conn:
            self.p.send(q, {"gone": True}, conn=conn)
            self.p.send_batch(q, [1, 2], conn=conn)
            conn.rollback()
            self.assertEqual(self.msgs(q), [])
            mid = self.p.send(q, {"kept": True}, conn=conn)
            self.assertEqual(self.msgs(q), [], "not visible before commit")
            conn.commit()
            # A producer on the caller's connection: its sends join the
            # connection's transaction too.
            on_conn = Producer(conn=conn, schema=self.schema)
            on_conn.send(q, {"gone": True})
            conn.rollback()
            kept = on_conn.send(q, {"kept": True})
            conn.commit()
            on_conn.close()
            self.assertFalse(conn.closed, "close leaves the caller's connection open")
        self.assertEqual([r[0] for r in self.msgs(q)], [mid, kept])

    def test_publish_reaches_every_subscriber_atomically(self):
        topic = queue_name("topic")
        queues = sorted(queue_name("sub") for _ in range(3))
        for q in queues:
            self.assertIs(self.p.subscribe(topic, q), True)
        self.assertIs(self.p.subscribe(topic, queues[0]), False, "already subscribed")
        out = self.p.publish(topic, {"profile": "safe"}, headers={"traceparent": "t1"})
        self.assertEqual(sorted(q for q, _ in out), queues)
        for q, mid in out:
            got = self.msgs(q)
            self.assertEqual([(r[0], r[1], r[2]) for r in got], [(mid, {"profile": "safe"}, {"traceparent": "t1"})])
        with psycopg.connect(DATABASE_URL) as conn:
            self.p.publish(topic, {"profile": "rolled back"}, conn=conn)
            conn.rollback()
        for q in queues:
            self.assertEqual(len(self.msgs(q)), 1)
        self.assertIs(self.p.unsubscribe(topic, queues[0]), True)
        self.assertIs(self.p.unsubscribe(topic, queues[0]), False)
        self.assertEqual(sorted(q for q, _ in self.p.publish(topic, {"n": 2})), queues[1:])

    def test_publish_without_subscribers(self):
        topic = queue_name("lonely")
        with self.assertRaisesRegex(psycopg.Error, "(?i)subscri"):
            self.p.publish(topic, {})
        self.assertEqual(self.p.publish(topic, {}, allow_no_subscribers=True), [])

    def test_bad_inputs_write_nothing(self):
        q = queue_name()
        cases = [
            lambda: self.p.send("bad name!", {}),
            lambda: self.p.send("", {}),
            lambda: self.p.send("x" * 129, {}),
            lambda: self.p.send(q, object()),
            lambda: self.p.send(q, float("nan")),
            lambda: self.p.send(q, {}, headers={"n": 1}),
            lambda: self.p.send(q, {}, headers=["a"]),
            lambda: self.p.send(q, {}, priority=40000),
            lambda: self.p.send(q, {}, priority=True),
            lambda: self.p.send(q, {}, delay_ms=-1),
            lambda: self.p.send(q, {}, dedup_key=""),
            lambda: self.p.send_batch(q, "not a list"),
            lambda: self.p.send_batch(q, [1, {1, 2}]),
            lambda: self.p.send_batch(q, [1, 2], headers=[{}]),
            lambda: self.p.publish("bad topic", {}),
            lambda: self.p.subscribe("t", "bad queue"),
            lambda: Producer(DATABASE_URL, schema="Bad-Schema"),
            lambda: Producer(schema=self.schema),
        ]
        for i, call in enumerate(cases):
            with self.subTest(case=i), self.assertRaises(InputError):
                call()
        self.assertEqual(self.msgs(q), [])

    def test_ids_stay_exact_past_2_53(self):
        q = queue_name()
        self.rows("SELECT setval(pg_get_serial_sequence('{s}.pgflow_messages', 'id'), 9007199254740993)")
        mid = self.p.send(q, None)
        self.assertEqual(mid, 9007199254740994)
        self.assertEqual(self.msgs(q)[0][:2], (mid, None))


if __name__ == "__main__":
    unittest.main()

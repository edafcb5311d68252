"""Test helpers: a pgflow schema of the test class's own on the real server,
created with pgflow's Go migrations and dropped afterwards."""

import os
import secrets
import subprocess
import threading
import time
import unittest

import psycopg

DATABASE_URL = os.environ.get("PGFLOW_TEST_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

_seq = 0


def queue_name(prefix="q"):
    global _seq
    _seq += 1
    return "%s_%d_%s" % (prefix, _seq, secrets.token_hex(2))


class SchemaTest(unittest.TestCase):
    """Each test class works in a fresh, migrated schema (self.schema) with
    an autocommit connection (self.db)."""

    @classmethod
    def setUpClass(cls):
        cls.schema = "pgflow_py_" + secrets.token_hex(4)
        # `go run` caches the built helper: after the first run this costs
        # about a second.
        subprocess.run(["go", "run", "./clients/internal/schemactl", "-url", DATABASE_URL, "-schema", cls.schema, "up"],
                       cwd=REPO_ROOT, env=dict(os.environ, GOWORK="off"), check=True, stdout=subprocess.DEVNULL)
        cls.db = psycopg.connect(DATABASE_URL, autocommit=True)

    @classmethod
    def tearDownClass(cls):
        cls.db.execute('DROP SCHEMA "%s" CASCADE' % cls.schema)
        cls.db.close()

    def rows(self, sql, args=()):
        return self.db.execute(sql.replace("{s}", '"%s"' % self.schema), args).fetchall()

    def live(self, queue):
        return self.rows("SELECT id, status, attempt, retry_count, locked_by, locked_until FROM {s}.pgflow_messages "
                         "WHERE queue_name = %s ORDER BY id", (queue,))

    def dead(self, queue):
        return self.rows("SELECT message_id, error, errors, attempts, payload, headers FROM {s}.pgflow_dlq "
                         "WHERE queue_name = %s ORDER BY id", (queue,))

    def declare(self, queue, max_retries=3, retry_delay_ms=1000):
        self.rows("INSERT INTO {s}.pgflow_queues (queue_name, max_retries, retry_delay_ms) VALUES (%s, %s, %s) "
                  "ON CONFLICT (queue_name) DO UPDATE SET max_retries = excluded.max_retries, "
                  "retry_delay_ms = excluded.retry_delay_ms RETURNING 1", (queue, max_retries, retry_delay_ms))


class Outcomes:
    """Collects a worker's on_settle calls; wait(n) returns once n arrived."""

    def __init__(self):
        self.items = []
        self._cond = threading.Condition()

    def __call__(self, message, outcome):
        with self._cond:
            self.items.append((message.id, outcome, message.attempt))
            self._cond.notify_all()

    def wait(self, n, timeout=20.0):
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.items) >= n, timeout):
                raise AssertionError("only %d of %d deliveries settled: %r" % (len(self.items), n, self.items))
            return list(self.items)


def wait_until(fn, what, timeout=10.0, interval=0.02):
    """Polls fn every interval seconds until it returns a true value, and
    returns that; for a database-side condition that no event reports. Fails
    naming what it waited for when timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %g s waiting for %s" % (timeout, what))
        time.sleep(interval)

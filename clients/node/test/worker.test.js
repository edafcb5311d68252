import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, describe, test } from 'node:test';

import {
  InputError, LeaseLostError, PermanentError, RetryAfterError, Worker,
} from '../src/index.js';
import { createSchema, declareQueue, deferred, queueName, waitFor } from './helpers.js';

// Every test ends within a minute: a test that waits in vain fails instead of
// hanging the run.
const T = { timeout: 60000 };

describe('Worker', () => {
  let db;
  let producer;
  let started = [];
  afterEach(async () => {
    // Workers of a failed test stop too, and release what they hold.
    await Promise.all(started.map((w) => w.stop({ timeoutMs: 100 })));
    started = [];
  });
  before(() => {
    db = createSchema();
    ({ producer } = db);
  });
  after(() => db.drop());

  const live = async (queue) => (await db.pool.query(
    `SELECT id, status, attempt, retry_count, locked_by, locked_until
     FROM "${db.schema}".pgflow_messages WHERE queue_name = $1 ORDER BY id`, [queue])).rows;
  const dead = async (queue) => (await db.pool.query(
    `SELECT message_id, error, errors, attempts, payload, headers
     FROM "${db.schema}".pgflow_dlq WHERE queue_name = $1 ORDER BY id`, [queue])).rows;

  // worker starts a worker on the test's schema; settled resolves after
  // `count` deliveries reached an outcome, with the outcomes in order.
  function worker(queue, handler, opts = {}, count = 1) {
    const outcomes = [];
    const settled = deferred();
    const w = new Worker({
      pool: db.pool, schema: db.schema, queue, handler, pollIntervalMs: 200, ...opts,
      onSettle: (m, outcome) => {
        outcomes.push({ id: m.id, outcome, attempt: m.attempt });
        if (outcomes.length === count) settled.resolve(outcomes);
      },
    });
    started.push(w);
    return { w: w.start(), settled: settled.promise, outcomes };
  }

  test('a sent message is claimed, handled with its fields and acknowledged', T, async () => {
    const q = queueName();
    const id = await producer.send(q, { hello: 'world' }, { headers: { traceparent: 'tp-1' }, priority: 3 });
    const seen = [];
    const { w, settled } = worker(q, async (m) => { seen.push(m); });
    assert.deepEqual((await settled).map((o) => o.outcome), ['ack']);
    await w.stop();
    assert.equal(seen.length, 1);
    const m = seen[0];
    assert.equal(m.id, id);
    assert.equal(typeof m.claimToken, 'string');
    assert.equal(m.queue, q);
    assert.deepEqual(m.payload, { hello: 'world' });
    assert.deepEqual(m.headers, { traceparent: 'tp-1' });
    assert.equal(m.priority, 3);
    assert.equal(m.attempt, 1);
    assert.equal(m.retryCount, 0);
    assert.equal(m.maxRetries, 3);
    assert.ok(m.createdAt instanceof Date);
    assert.deepEqual(await live(q), []);
  });

  test('a NOTIFY wakes an idle worker long before its poll interval', T, async () => {
    const q = queueName();
    const { w, settled } = worker(q, async () => {}, { pollIntervalMs: 600000 });
    // Once listening resolves, a claim made after the LISTEN found nothing:
    // the worker now sleeps for ten minutes unless the send's notification
    // wakes it (the test's timeout fails it).
    await w.listening;
    await producer.send(q, { wake: true });
    assert.deepEqual((await settled).map((o) => o.outcome), ['ack']);
    await w.stop();
  });

  test('listening rejects for a worker made with listen: false, and when the worker stops first', T, async () => {
    const base = { pool: db.pool, schema: db.schema, queue: queueName(), handler: async () => {} };
    await assert.rejects(new Worker({ ...base, listen: false }).listening, /listen: false/);
    const w = new Worker(base);
    await w.stop();
    await assert.rejects(w.listening, /worker stopped/);
  });

  test('a worker whose LISTEN connection is killed listens again', T, async () => {
    const q = queueName();
    const { w, settled } = worker(q, async () => {}, { pollIntervalMs: 600000 });
    const listeners = async () => (await db.pool.query(
      `SELECT pid FROM pg_stat_activity WHERE query = $1`, [`LISTEN "pgflow.${db.schema}"`])).rows.map((r) => r.pid);
    await w.listening;
    // The worker's listener is among these (with, briefly, those of workers
    // of earlier tests that are still exiting): end them all.
    const old = await listeners();
    assert.ok(old.length > 0, 'no backend runs the worker\'s LISTEN');
    await db.pool.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [old]);
    await waitFor(async () => (await listeners()).some((pid) => !old.includes(pid)), 'the worker to LISTEN on a new connection');
    // The worker saw its connection go before it listened again, so
    // listening is the new connection's promise: it resolves once a claim
    // after the new LISTEN found nothing. With a ten-minute poll interval
    // only a notification on the new connection wakes the worker in time.
    await w.listening;
    await producer.send(q, { wake: true });
    assert.deepEqual((await settled).map((o) => o.outcome), ['ack']);
    await w.stop();
  });

  test('a failing handler retries with backoff, then lands in the DLQ with every error', T, async () => {
    const q = queueName();
    await declareQueue(db.pool, db.schema, q, { maxRetries: 2, retryDelayMs: 100 });
    const id = await producer.send(q, { poison: true }, { headers: { traceparent: 'tp-2' } });
    const attempts = [];
    const { w, settled } = worker(q, async (m) => {
      attempts.push({ attempt: m.attempt, retryCount: m.retryCount, at: Date.now() });
      throw new Error(`boom ${m.attempt}`);
    }, {}, 3);
    assert.deepEqual((await settled).map((o) => o.outcome), ['retry', 'retry', 'dead']);
    await w.stop();
    assert.deepEqual(attempts.map((a) => [a.attempt, a.retryCount]), [[1, 0], [2, 1], [3, 2]]);
    // Backoff: retry n waits retry_delay * 2^(n-1), drawn from [d/2, d].
    assert.ok(attempts[1].at - attempts[0].at >= 50 - 5, `first retry after ${attempts[1].at - attempts[0].at} ms`);
    assert.ok(attempts[2].at - attempts[1].at >= 100 - 5, `second retry after ${attempts[2].at - attempts[1].at} ms`);
    const [d] = await dead(q);
    assert.equal(d.message_id, id);
    assert.equal(d.error, 'boom 3');
    assert.deepEqual(d.errors.map((e) => e.error), ['boom 1', 'boom 2', 'boom 3']);
    assert.equal(d.attempts, 3);
    assert.deepEqual(d.payload, { poison: true });
    assert.deepEqual(d.headers, { traceparent: 'tp-2' });
    assert.deepEqual(await live(q), []);
  });

  test('PermanentError dead-letters at once; RetryAfterError picks the delay', T, async () => {
    const q = queueName();
    await declareQueue(db.pool, db.schema, q, { maxRetries: 5, retryDelayMs: 600000 });
    const perm = await producer.send(q, { kind: 'perm' });
    const later = await producer.send(q, { kind: 'later' });
    const { w, settled } = worker(q, async (m) => {
      if (m.payload.kind === 'perm') throw new PermanentError('malformed order');
      // Without RetryAfterError the retry would wait the queue's ten minutes.
      if (m.attempt === 1) throw new RetryAfterError(50, 'busy');
    }, { concurrency: 2 }, 3);
    const outcomes = await settled;
    await w.stop();
    assert.deepEqual(outcomes.filter((o) => o.id === perm).map((o) => o.outcome), ['dead']);
    assert.deepEqual(outcomes.filter((o) => o.id === later).map((o) => [o.outcome, o.attempt]), [['retry', 1], ['ack', 2]]);
    const [d] = await dead(q);
    assert.equal(d.message_id, perm);
    assert.equal(d.error, 'malformed order');
    assert.equal(d.attempts, 1);
  });

  test('the heartbeat keeps a handler that outlives its lease the only delivery', T, async () => {
    const q = queueName();
    const id = await producer.send(q, { slow: true });
    const observed = deferred();
    const started = deferred();
    let deliveries = 0;
    // Lease 1 s: without extension the rescuers (both workers, every
    // 100 ms) would hand the message to the second worker after it.
    const { w, settled } = worker(q, async () => {
      deliveries++;
      started.resolve();
      await observed.promise;
    }, { leaseMs: 1000, rescueIntervalMs: 100, consumerId: 'slow' });
    const other = worker(q, async () => { deliveries++; }, { leaseMs: 1000, rescueIntervalMs: 100, pollIntervalMs: 50, consumerId: 'other' });
    await started.promise;
    // Watch the lease move forward until it ends more than one lease
    // length later than the first one did.
    const first = (await live(q))[0].locked_until;
    await waitFor(async () => {
      const [row] = await live(q);
      assert.equal(row.status, 'processing');
      assert.equal(row.attempt, 1, 'delivered again while the handler ran');
      assert.equal(row.locked_by, 'slow');
      return row.locked_until - first > 1200;
    }, 'the lease to end more than 1.2 s later than the first one', { intervalMs: 50 });
    observed.resolve();
    assert.deepEqual((await settled).map((o) => o.outcome), ['ack']);
    await Promise.all([w.stop(), other.w.stop()]);
    assert.equal(deliveries, 1);
    assert.deepEqual(await live(q), []);
    assert.deepEqual(await dead(q), []);
    assert.equal(id, (await settled)[0].id);
  });

  test('a lease lost while the handler runs aborts it, and its late success acknowledges nothing', T, async () => {
    const q = queueName();
    await producer.send(q, { n: 1 });
    const reasons = [];
    const { w, settled } = worker(q, async (m, { signal }) => {
      if (m.attempt > 1) return;
      // The lease runs out (as after a long pause of this process) and a
      // rescuer hands the message back: the next heartbeat finds its token
      // gone.
      // One transaction: the row lock keeps a heartbeat from extending the
      // lease in between.
      await db.pool.query(`BEGIN;
        UPDATE "${db.schema}".pgflow_messages SET locked_until = now() - interval '1 second' WHERE id = ${m.id};
        SELECT count(*) FROM "${db.schema}".pgflow_rescue(10);
        COMMIT`);
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      reasons.push(signal.reason.message);
    }, { leaseMs: 600, rescueIntervalMs: 0 }, 2);
    assert.deepEqual((await settled).map((o) => [o.outcome, o.attempt]), [['lost', 1], ['ack', 2]]);
    await w.stop();
    assert.deepEqual(reasons, ['pgflow: lease lost']);
    assert.deepEqual(await live(q), []);
  });

  test('ackTx commits the acknowledgement with the handler\'s transaction, or rolls it back', T, async () => {
    const q = queueName();
    const out = queueName('out');
    await declareQueue(db.pool, db.schema, q, { maxRetries: 3, retryDelayMs: 10 });
    const id = await producer.send(q, { n: 1 });
    const { w, settled } = worker(q, async (m, { ackTx }) => {
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        await producer.send(out, { from: m.id, attempt: m.attempt }, { client });
        await ackTx(client);
        if (m.attempt === 1) {
          // The first attempt rolls back: neither the forward nor the
          // acknowledgement happened, and the attempt fails.
          await client.query('ROLLBACK');
          throw new Error('rolled back');
        }
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }, {}, 2);
    assert.deepEqual((await settled).map((o) => [o.outcome, o.attempt]), [['retry', 1], ['ack', 2]]);
    await w.stop();
    assert.deepEqual(await live(q), []);
    const forwarded = (await db.pool.query(`SELECT payload FROM "${db.schema}".pgflow_messages WHERE queue_name = $1`, [out])).rows;
    assert.deepEqual(forwarded.map((r) => r.payload), [{ from: id, attempt: 2 }]);
  });

  test('ackTx after the lease was lost throws LeaseLostError, so the caller rolls back', T, async () => {
    const q = queueName();
    await producer.send(q, { n: 1 });
    const errors = [];
    const { w, settled } = worker(q, async (m, { ackTx }) => {
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        if (m.attempt === 1) {
          await db.pool.query(`BEGIN;
            UPDATE "${db.schema}".pgflow_messages SET locked_until = now() - interval '1 second' WHERE id = ${m.id};
            SELECT count(*) FROM "${db.schema}".pgflow_rescue(10);
            COMMIT`);
        }
        await ackTx(client);
        await client.query('COMMIT');
      } catch (err) {
        errors.push(err);
        await client.query('ROLLBACK');
        throw err;
      } finally {
        client.release();
      }
    }, { rescueIntervalMs: 0 }, 2);
    assert.deepEqual((await settled).map((o) => [o.outcome, o.attempt]), [['lost', 1], ['ack', 2]]);
    await w.stop();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof LeaseLostError);
    await assert.rejects(w.ackTx(null, { id: '1' }), InputError);
  });

  test('stop releases claimed messages no handler started and waits for the running one', T, async () => {
    const q = queueName();
    const ids = await producer.sendBatch(q, [1, 2, 3]);
    const running = deferred();
    const finish = deferred();
    const { w, outcomes } = worker(q, async (m) => {
      running.resolve(m.id);
      await finish.promise;
    }, { concurrency: 1, prefetch: 2 }, 3);
    const first = await running.promise;
    assert.equal(first, ids[0]);
    const stopped = w.stop();
    // The two buffered messages go back while the first handler still runs.
    const rows = await waitFor(async () => {
      const r = await live(q);
      return r.filter((m) => m.status === 'pending').length === 2 && r;
    }, 'the two buffered messages to be released');
    assert.deepEqual(rows.map((r) => [r.id, r.status]), [[ids[0], 'processing'], [ids[1], 'pending'], [ids[2], 'pending']]);
    assert.deepEqual(rows.map((r) => r.retry_count), [0, 0, 0], 'a release is not a failed attempt');
    finish.resolve();
    assert.deepEqual(await stopped, { released: 2, abandoned: 0 });
    assert.deepEqual(outcomes.map((o) => [o.id, o.outcome]), [[ids[1], 'released'], [ids[2], 'released'], [ids[0], 'ack']]);
    assert.deepEqual((await live(q)).map((r) => r.id), [ids[1], ids[2]]);
    assert.deepEqual(await w.stop(), { released: 2, abandoned: 0 }, 'stop again returns the same result');
  });

  test('stop past its timeout aborts the running handler and hands its message back', T, async () => {
    const q = queueName();
    const id = await producer.send(q, { stuck: true });
    const running = deferred();
    let reason;
    const { w } = worker(q, async (m, { signal }) => {
      running.resolve();
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      reason = signal.reason.message;
    });
    await running.promise;
    assert.deepEqual(await w.stop({ timeoutMs: 50 }), { released: 0, abandoned: 1 });
    assert.equal(reason, 'pgflow: worker stopped');
    const [row] = await live(q);
    assert.equal(row.id, id);
    assert.equal(row.status, 'pending');
    assert.equal(row.retry_count, 0);
  });

  test('concurrency runs that many handlers at once and never more', T, async () => {
    const q = queueName();
    await producer.sendBatch(q, Array.from({ length: 12 }, (_, i) => ({ i })));
    let now = 0;
    let peak = 0;
    const allIn = deferred();
    const { w, settled } = worker(q, async () => {
      now++;
      peak = Math.max(peak, now);
      if (now === 4) allIn.resolve();
      // The first four wait for each other: proof that four run at once.
      await allIn.promise;
      await sleep(5); // the handler's work, so that later handlers overlap
      now--;
    }, { concurrency: 4, batchSize: 3 }, 12);
    const outcomes = await settled;
    await w.stop();
    assert.equal(peak, 4);
    assert.equal(new Set(outcomes.map((o) => o.id)).size, 12);
    assert.ok(outcomes.every((o) => o.outcome === 'ack'));
    assert.deepEqual(await live(q), []);
  });

  test('two workers on one queue share it, each message handled once', T, async () => {
    const q = queueName();
    const n = 40;
    await producer.sendBatch(q, Array.from({ length: n }, (_, i) => ({ i })));
    const seen = new Map();
    const done = deferred();
    const handler = async (m) => {
      seen.set(m.payload.i, (seen.get(m.payload.i) ?? 0) + 1);
      if ([...seen.values()].reduce((a, b) => a + b, 0) === n) done.resolve();
    };
    const a = worker(q, handler, { concurrency: 3, consumerId: 'a' });
    const b = worker(q, handler, { concurrency: 3, consumerId: 'b' });
    await done.promise;
    await Promise.all([a.w.stop(), b.w.stop()]);
    assert.equal(seen.size, n);
    assert.ok([...seen.values()].every((c) => c === 1));
  });

  test('bad options are refused', () => {
    const base = { pool: db.pool, schema: db.schema, queue: 'q', handler: async () => {} };
    for (const bad of [
      { queue: 'no spaces' }, { queue: undefined }, { handler: 'x' }, { concurrency: 0 }, { concurrency: 1.5 },
      { leaseMs: 0 }, { prefetch: -1 }, { batchSize: 0 }, { pollIntervalMs: 0 }, { schema: 'x;drop' },
      { rescueIntervalMs: -1 }, { consumerId: '' }, { consumerId: 'x'.repeat(257) }, { pool: undefined },
    ]) {
      assert.throws(() => new Worker({ ...base, ...bad }), InputError, JSON.stringify(bad));
    }
    assert.throws(() => new RetryAfterError(-1, 'x'), InputError);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { InputError, Producer } from '../src/index.js';
import { createSchema, queueName } from './helpers.js';

// Every test ends within a minute: a test that waits in vain fails instead of
// hanging the run.
const T = { timeout: 60000 };

describe('Producer', () => {
  let db;
  let producer;
  before(() => {
    db = createSchema();
    ({ producer } = db);
  });
  after(() => db.drop());

  const rows = async (queue) => (await db.pool.query(
    `SELECT id, payload, headers, priority, dedup_key, visible_at > now() AS delayed
     FROM "${db.schema}".pgflow_messages WHERE queue_name = $1 ORDER BY id`, [queue])).rows;

  test('send writes payload, headers, priority, delay and dedup key', T, async () => {
    const q = queueName();
    const id = await producer.send(q, { n: 1 }, { headers: { traceparent: '00-abc-def-01' }, priority: 5 });
    assert.equal(typeof id, 'string');
    const delayed = await producer.send(q, 'later', { delayMs: 60000 });
    const d1 = await producer.send(q, [1, 2], { dedupKey: 'k' });
    const d2 = await producer.send(q, [3], { dedupKey: 'k' });
    assert.equal(d2, d1, 'a second send with a queued dedup key returns the first id');
    const got = await rows(q);
    assert.deepEqual(got.map((r) => r.id), [id, delayed, d1]);
    assert.deepEqual(got[0].payload, { n: 1 });
    assert.deepEqual(got[0].headers, { traceparent: '00-abc-def-01' });
    assert.equal(got[0].priority, 5);
    assert.equal(got[1].payload, 'later');
    assert.equal(got[1].delayed, true);
    assert.deepEqual(got[2].payload, [1, 2]);
  });

  test('sendBatch returns ids in input order, with per-message headers', T, async () => {
    const q = queueName();
    const ids = await producer.sendBatch(q, [{ i: 0 }, { i: 1 }, { i: 2 }], {
      headers: [{ h: 'a' }, {}, { h: 'c' }],
    });
    assert.equal(ids.length, 3);
    const got = await rows(q);
    const byId = new Map(got.map((r) => [r.id, r]));
    ids.forEach((id, i) => assert.equal(byId.get(id).payload.i, i));
    assert.deepEqual(byId.get(ids[0]).headers, { h: 'a' });
    assert.deepEqual(byId.get(ids[2]).headers, { h: 'c' });
    assert.deepEqual(await producer.sendBatch(q, []), []);
  });

  test('send and sendBatch inside a caller transaction commit and roll back with it', T, async () => {
    const q = queueName();
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await producer.send(q, { gone: true }, { client });
      await producer.sendBatch(q, [1, 2], { client });
      await client.query('ROLLBACK');
      assert.equal((await rows(q)).length, 0, 'rolled back');
      await client.query('BEGIN');
      const id = await producer.send(q, { kept: true }, { client });
      assert.equal((await rows(q)).length, 0, 'not visible before commit');
      await client.query('COMMIT');
      assert.deepEqual((await rows(q)).map((r) => r.id), [id]);
    } finally {
      client.release();
    }
  });

  test('publish delivers to every subscribed queue, atomically with the transaction', T, async () => {
    const topic = queueName('topic');
    const queues = [queueName('sub'), queueName('sub'), queueName('sub')];
    for (const q of queues) assert.equal(await producer.subscribe(topic, q), true);
    assert.equal(await producer.subscribe(topic, queues[0]), false, 'already subscribed');
    const out = await producer.publish(topic, { profile: 'safe' }, { headers: { traceparent: 't1' } });
    assert.deepEqual(out.map((o) => o.queue).sort(), [...queues].sort());
    for (const q of queues) {
      const got = await rows(q);
      assert.equal(got.length, 1);
      assert.equal(got[0].id, out.find((o) => o.queue === q).id);
      assert.deepEqual(got[0].payload, { profile: 'safe' });
      assert.deepEqual(got[0].headers, { traceparent: 't1' });
    }
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await producer.publish(topic, { profile: 'rolled back' }, { client });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    for (const q of queues) assert.equal((await rows(q)).length, 1, `${q} got the rolled-back publish`);
    assert.equal(await producer.unsubscribe(topic, queues[0]), true);
    assert.equal(await producer.unsubscribe(topic, queues[0]), false);
    assert.deepEqual((await producer.publish(topic, { n: 2 })).map((o) => o.queue).sort(), queues.slice(1).sort());
  });

  test('publish to a topic without subscribers fails unless allowed', T, async () => {
    const topic = queueName('lonely');
    await assert.rejects(producer.publish(topic, {}), /subscri/i);
    assert.deepEqual(await producer.publish(topic, {}, { allowNoSubscribers: true }), []);
  });

  test('bad inputs are refused before anything is written', T, async () => {
    const q = queueName();
    const bad = [
      () => producer.send('bad name!', {}),
      () => producer.send('', {}),
      () => producer.send('x'.repeat(129), {}),
      () => producer.send(q, undefined),
      () => producer.send(q, () => 1),
      () => producer.send(q, { big: 1n }),
      () => producer.send(q, {}, { headers: { n: 1 } }),
      () => producer.send(q, {}, { headers: ['a'] }),
      () => producer.send(q, {}, { priority: 40000 }),
      () => producer.send(q, {}, { priority: 1.5 }),
      () => producer.send(q, {}, { delayMs: -1 }),
      () => producer.send(q, {}, { dedupKey: '' }),
      () => producer.sendBatch(q, 'not an array'),
      () => producer.sendBatch(q, [1, undefined]),
      () => producer.sendBatch(q, [1, 2], { headers: [{}] }),
      () => producer.publish('bad topic', {}),
      () => producer.subscribe('t', 'bad queue'),
    ];
    for (const [i, call] of bad.entries()) {
      await assert.rejects(call(), InputError, `case ${i}`);
    }
    assert.throws(() => new Producer({ pool: db.pool, schema: 'Bad-Schema' }), InputError);
    assert.throws(() => new Producer({ schema: db.schema }), InputError);
    assert.equal((await rows(q)).length, 0);
  });

  test('a JSON payload of any shape round-trips; ids stay exact past 2^53', T, async () => {
    const q = queueName();
    await db.pool.query(`SELECT setval(pg_get_serial_sequence('"${db.schema}".pgflow_messages', 'id'), 9007199254740993)`);
    const id = await producer.send(q, null);
    assert.equal(id, '9007199254740994');
    const got = await rows(q);
    assert.equal(got[0].id, id);
    assert.equal(got[0].payload, null);
  });
});

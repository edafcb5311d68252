// Producer: sends messages to queues and publishes to topics through
// pgflow's SQL functions (pgflow_send, pgflow_send_batch, pgflow_publish),
// which write and NOTIFY in one statement, so consumers in any language
// wake at once.

import { openPool } from './db.js';
import { InputError } from './errors.js';
import {
  checkDedupKey, checkDelay, checkPriority, checkQueue, encodeHeaders, encodePayload, quotedSchema,
} from './names.js';

export class Producer {
  #pool;
  #owned;
  #s;

  // options: pool (a pg.Pool) or connectionString; schema (default
  // "public"); poolSize for a pool of its own (default 2).
  constructor({ pool, connectionString, schema = 'public', poolSize = 2 } = {}) {
    this.#s = quotedSchema(schema);
    ({ pool: this.#pool, owned: this.#owned } = openPool({ pool, connectionString, poolSize }));
  }

  // pool is the pg.Pool the producer sends through (its own, or yours): take
  // a client from it for a transaction of yours.
  get pool() { return this.#pool; }

  // send writes one message and returns its id (a string: ids are bigints).
  // options: headers (object of strings), priority (NULL: the queue's),
  // delayMs, dedupKey (while a message with the same key is queued or in
  // flight, send returns its id and writes nothing), client (a pg client in
  // a transaction: the message commits or rolls back with it).
  async send(queue, payload, { headers, priority, delayMs, dedupKey, client } = {}) {
    const args = [
      checkQueue(queue), encodePayload(payload), encodeHeaders(headers),
      checkPriority(priority), checkDelay(delayMs), checkDedupKey(dedupKey),
    ];
    const res = await (client ?? this.#pool).query(
      `SELECT ${this.#s}.pgflow_send($1::text, $2::jsonb, $3::jsonb, $4::integer, $5::bigint, $6::text) AS id`, args);
    return res.rows[0].id;
  }

  // sendBatch writes many messages to one queue in one statement and returns
  // their ids in input order. options: headers (one object per payload, or
  // omitted), priority, delayMs, client.
  async sendBatch(queue, payloads, { headers, priority, delayMs, client } = {}) {
    checkQueue(queue);
    if (!Array.isArray(payloads)) {
      throw new InputError('payloads', 'payloads must be an array');
    }
    if (payloads.length === 0) return [];
    const bodies = payloads.map((p, i) => encodePayload(p, `payloads[${i}]`));
    let heads = null;
    if (headers !== undefined && headers !== null) {
      if (!Array.isArray(headers) || headers.length !== payloads.length) {
        throw new InputError('headers', 'headers must be an array with one object per payload');
      }
      heads = headers.map((h, i) => encodeHeaders(h, `headers[${i}]`));
    }
    const res = await (client ?? this.#pool).query(
      `SELECT id FROM ${this.#s}.pgflow_send_batch($1::text, $2::jsonb[], $3::jsonb[], $4::integer, $5::bigint) AS id`,
      [queue, bodies, heads, checkPriority(priority), checkDelay(delayMs)]);
    return res.rows.map((r) => r.id);
  }

  // publish writes one message to every queue subscribed to topic, in one
  // statement, and returns [{queue, id}]. A topic without subscribers is an
  // error unless allowNoSubscribers. options as send's (no dedupKey).
  async publish(topic, payload, { headers, priority, delayMs, allowNoSubscribers = false, client } = {}) {
    const res = await (client ?? this.#pool).query(
      `SELECT queue, id FROM ${this.#s}.pgflow_publish($1::text, $2::jsonb, $3::jsonb, $4::integer, $5::bigint, $6::boolean)`,
      [checkQueue(topic, 'topic'), encodePayload(payload), encodeHeaders(headers),
        checkPriority(priority), checkDelay(delayMs), allowNoSubscribers === true]);
    return res.rows.map((r) => ({ queue: r.queue, id: r.id }));
  }

  // subscribe makes queue (created if missing) receive every later publish
  // to topic. Returns true when the subscription is new.
  async subscribe(topic, queue, { client } = {}) {
    const r = await (client ?? this.#pool).query(
      `SELECT ${this.#s}.pgflow_subscribe($1::text, $2::text) AS created`, [checkQueue(topic, 'topic'), checkQueue(queue)]);
    return r.rows[0].created;
  }

  // unsubscribe ends a subscription; messages already published stay.
  // Returns true when there was one.
  async unsubscribe(topic, queue, { client } = {}) {
    const r = await (client ?? this.#pool).query(
      `SELECT ${this.#s}.pgflow_unsubscribe($1::text, $2::text) AS removed`, [checkQueue(topic, 'topic'), checkQueue(queue)]);
    return r.rows[0].removed;
  }

  // end closes the producer's own pool (a pool passed in stays open).
  async end() {
    if (this.#owned) await this.#pool.end();
  }
}

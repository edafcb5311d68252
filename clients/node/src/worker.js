// Worker: a consumer of one queue with a pool of concurrent handlers, built
// on pgflow's SQL functions: pgflow_claim hands out messages with a lease
// and a claim token, and only that token can ack, fail, extend or release
// the delivery.
//
// One loop claims up to the free capacity (concurrency running handlers plus
// prefetch buffered messages) and sleeps until a NOTIFY for the queue, a
// finished handler or the poll interval wakes it. One heartbeat extends the
// lease of every held message every third of the lease. Handlers that throw
// go to pgflow_fail, which retries with the queue's backoff or dead-letters.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import { openPool } from './db.js';
import { InputError, LeaseLostError, failure } from './errors.js';
import { channelFor, checkPositiveInt, checkQueue, quotedSchema } from './names.js';

// Message is one delivery. id and claimToken are strings (bigints kept exact).
export class Message {
  constructor(queue, row) {
    this.id = row.id;
    this.claimToken = row.claim_token;
    this.queue = queue;
    this.payload = row.payload;
    this.headers = row.headers ?? {};
    this.priority = row.priority;
    // attempt is this delivery's number, 1 for the first; retryCount the
    // failed deliveries before it; maxRetries the queue's limit.
    this.attempt = row.attempt;
    this.retryCount = row.retry_count;
    this.maxRetries = row.max_retries;
    this.createdAt = row.created_at;
    this.lockedUntil = row.locked_until;
  }
}

// pending returns a promise with its resolve and reject functions and a
// settled flag; a rejection nobody awaits is not reported as unhandled.
function pending() {
  const d = { settled: false };
  d.promise = new Promise((resolve, reject) => {
    d.resolve = (v) => { d.settled = true; resolve(v); };
    d.reject = (err) => { d.settled = true; reject(err); };
  });
  d.promise.catch(() => {});
  return d;
}

const defaultLog = (msg, err) => (err == null ? console.warn(`pgflow: ${msg}`) : console.warn(`pgflow: ${msg}:`, err.message ?? err));

export class Worker {
  #pool;
  #owned;
  #schema;
  #s;
  #queue;
  #handler;
  #concurrency;
  #prefetch;
  #batchSize;
  #leaseMs;
  #pollMs;
  #listen;
  #consumer;
  #log;

  #held = new Map(); // id -> entry {message, started, settling, done, lost, released, ac}
  #buffer = []; // entries claimed, not started
  #running = 0;
  #idleWaiters = [];

  #started = false;
  #stopping = false;
  #stopPromise = null;
  #loopDone = null;
  #wakeFlag = false;
  #wakeResolve = null;
  #heartbeat = null;
  #heartbeatBusy = false;
  #listener = null;
  #listenerRetry = null;
  #rescueMs;
  #rescuer = null;
  #rescueBusy = false;
  #onSettle;
  #listening;

  // options:
  //   pool | connectionString, schema (default "public"), poolSize (own pool, default concurrency + 2)
  //   queue, handler: async (message, { signal }) => void; returning acks,
  //     throwing fails the attempt (PermanentError: DLQ at once,
  //     RetryAfterError: retry after its delay, else the queue's backoff)
  //   concurrency (default 1): handlers running at once
  //   prefetch (default 0): messages claimed ahead of a free handler
  //   batchSize (default concurrency + prefetch): most messages per claim
  //   leaseMs (default 30000): lease per claim and per extension
  //   pollIntervalMs (default 1000): longest sleep without a notification
  //   listen (default true): LISTEN for new messages
  //   consumerId (default host:pid:random): shown in pgflow's ops views
//   rescueIntervalMs (default 1000, 0: never): how often to return messages
//     whose lease ran out (pgflow_rescue: a crashed consumer's messages)
  //   onSettle(message, outcome): after each delivery, outcome one of "ack",
//     "retry", "dead", "lost" (the lease was lost: pgflow no longer let this
//     delivery settle the message) and "released" (handed back by stop)
//   onError(message, err): connection and settle errors (default console.warn)
  constructor({
    pool, connectionString, schema = 'public', poolSize, queue, handler,
    concurrency = 1, prefetch = 0, batchSize, leaseMs = 30000, pollIntervalMs = 1000,
    listen = true, consumerId, rescueIntervalMs = 1000, onSettle, onError,
  } = {}) {
    this.#s = quotedSchema(schema);
    this.#schema = schema;
    this.#queue = checkQueue(queue);
    if (typeof handler !== 'function') throw new InputError('handler', 'handler must be a function');
    this.#handler = handler;
    this.#concurrency = checkPositiveInt(concurrency, 'concurrency', 10000);
    if (!Number.isInteger(prefetch) || prefetch < 0 || prefetch > 10000) {
      throw new InputError('prefetch', `prefetch must be an integer in [0, 10000], not ${prefetch}`);
    }
    this.#prefetch = prefetch;
    this.#batchSize = checkPositiveInt(batchSize ?? concurrency + prefetch, 'batchSize', 10000);
    this.#leaseMs = checkPositiveInt(leaseMs, 'leaseMs');
    this.#pollMs = checkPositiveInt(pollIntervalMs, 'pollIntervalMs');
    this.#listen = listen !== false;
    this.#consumer = consumerId ?? `${hostname()}:${process.pid}:${randomBytes(2).toString('hex')}`;
    if (typeof this.#consumer !== 'string' || this.#consumer === '' || this.#consumer.length > 256) {
      throw new InputError('consumerId', 'consumerId must be a string of 1-256 characters');
    }
    if (!Number.isInteger(rescueIntervalMs) || rescueIntervalMs < 0) {
      throw new InputError('rescueIntervalMs', `rescueIntervalMs must be a non-negative integer, not ${rescueIntervalMs}`);
    }
    this.#rescueMs = rescueIntervalMs;
    this.#log = onError ?? defaultLog;
    this.#onSettle = onSettle ?? (() => {});
    ({ pool: this.#pool, owned: this.#owned } = openPool({
      pool, connectionString, poolSize: poolSize ?? Math.min(this.#concurrency, 8) + 2,
    }));
    this.#listening = pending();
    if (!this.#listen) this.#listening.reject(new Error('pgflow: worker does not listen (listen: false)'));
  }

  get consumerId() { return this.#consumer; }

  // listening is a promise that resolves once the worker LISTENs for new
  // messages and a claim made since found the queue drained: from then on a
  // message sent to the queue wakes the worker at once, without waiting for
  // the poll interval. After a lost LISTEN connection it is a new promise
  // that resolves when the worker listens again. It rejects when the worker
  // stops first, or at once with listen: false.
  get listening() { return this.#listening.promise; }

  // ackTx acknowledges a message in the caller's transaction (client: a pg
  // client after BEGIN), so that the handler's writes, messages it sends
  // with { client } included, and the acknowledgement commit or roll back
  // together. It throws LeaseLostError, and the caller must roll back, when
  // the delivery no longer holds the message (its lease ran out and the
  // message went to another consumer). The worker's own acknowledgement
  // after the handler returns then finds nothing left to do. Handlers also
  // get it as their second argument's ackTx(client).
  async ackTx(client, message) {
    const e = this.#held.get(message?.id);
    if (!e || e.message !== message) {
      throw new InputError('message', 'ackTx takes a message this worker is handling');
    }
    return this.#ackTx(client, e);
  }

  async #ackTx(client, e) {
    if (!client || typeof client.query !== 'function') throw new InputError('client', 'ackTx needs a pg client in a transaction');
    const m = e.message;
    const r = await client.query(`SELECT ${this.#s}.pgflow_ack($1::bigint, $2::bigint) AS ok`, [m.id, m.claimToken]);
    if (!r.rows[0].ok) throw new LeaseLostError(m.id);
    e.ackedTx = true;
  }

  // start begins claiming. It returns at once; errors on the way are
  // retried and reported to onError.
  start() {
    if (this.#started) throw new Error('pgflow: worker already started');
    this.#started = true;
    if (this.#listen) this.#connectListener(0);
    this.#heartbeat = setInterval(() => this.#extendLeases(), Math.max(1, Math.floor(this.#leaseMs / 3)));
    if (this.#rescueMs > 0) this.#rescuer = setInterval(() => this.#rescue(), this.#rescueMs);
    this.#loopDone = this.#loop();
    return this;
  }

  // stop stops claiming, releases the claimed messages no handler started
  // (pgflow_release: not a failed attempt), and waits up to timeoutMs for
  // running handlers to finish and settle. Handlers still running then are
  // aborted (their signal fires) and their messages released. Returns
  // { released, abandoned }: messages handed back unstarted, and handlers
  // given up on. Calling it again returns the same promise.
  stop({ timeoutMs = 30000 } = {}) {
    if (!this.#stopPromise) this.#stopPromise = this.#stop(timeoutMs);
    return this.#stopPromise;
  }

  async #stop(timeoutMs) {
    this.#stopping = true;
    this.#wake();
    if (this.#loopDone) await this.#loopDone;
    const unstarted = this.#buffer.splice(0);
    for (const e of unstarted) {
      e.released = true;
      this.#held.delete(e.message.id);
    }
    const released = await this.#release(unstarted);
    for (const e of unstarted) this.#notifySettled(e.message, 'released');
    let abandoned = 0;
    if (this.#running > 0) {
      let timer;
      const timedOut = await Promise.race([
        new Promise((res) => this.#idleWaiters.push(() => res(false))),
        new Promise((res) => { timer = setTimeout(() => res(true), timeoutMs); }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        const running = [...this.#held.values()].filter((e) => e.started && !e.done);
        abandoned = running.length;
        for (const e of running) {
          e.released = true;
          e.ac.abort(new Error('pgflow: worker stopped'));
          this.#held.delete(e.message.id);
        }
        await this.#release(running);
      }
    }
    clearInterval(this.#heartbeat);
    clearInterval(this.#rescuer);
    clearTimeout(this.#listenerRetry);
    this.#listening.reject(new Error('pgflow: worker stopped'));
    if (this.#listener) {
      const l = this.#listener;
      this.#listener = null;
      l.release(true);
    }
    if (this.#owned) await this.#pool.end();
    return { released, abandoned };
  }

  async #loop() {
    let failures = 0;
    while (!this.#stopping) {
      const free = this.#concurrency + this.#prefetch - this.#held.size;
      if (free > 0) {
        const want = Math.min(free, this.#batchSize);
        this.#wakeFlag = false;
        const listener = this.#listener;
        let rows;
        try {
          rows = await this.#claim(want);
          failures = 0;
        } catch (err) {
          failures++;
          this.#log(`claim from ${this.#queue} failed`, err);
          await this.#sleep(Math.min(100 * 2 ** Math.min(failures, 6), 5000));
          continue;
        }
        for (const row of rows) {
          const e = { message: new Message(this.#queue, row), started: false, settling: false, ackedTx: false, done: false, lost: false, released: false, ac: null };
          this.#held.set(e.message.id, e);
          this.#buffer.push(e);
        }
        if (this.#stopping) break; // stop releases the buffer
        this.#dispatch();
        if (rows.length === want) continue; // there may be more
        // A claim issued after the LISTEN returned found the queue drained:
        // anything sent from now on comes with a notification.
        if (listener !== null && listener === this.#listener) this.#listening.resolve();
      }
      await this.#sleep(this.#pollMs);
    }
  }

  #claim(n) {
    return this.#pool.query(
      `SELECT id, claim_token, payload, headers, priority, attempt, retry_count, max_retries, created_at, locked_until
       FROM ${this.#s}.pgflow_claim($1::text, $2::integer, $3::integer, $4::text)`,
      [this.#queue, n, this.#leaseMs, this.#consumer]).then((r) => r.rows);
  }

  #dispatch() {
    while (this.#running < this.#concurrency && this.#buffer.length > 0 && !this.#stopping) {
      this.#execute(this.#buffer.shift());
    }
  }

  async #execute(e) {
    this.#running++;
    e.started = true;
    e.ac = new AbortController();
    let err = null;
    let ok = true;
    try {
      await this.#handler(e.message, { signal: e.ac.signal, ackTx: (client) => this.#ackTx(client, e) });
    } catch (thrown) {
      ok = false;
      err = thrown;
    }
    e.settling = true; // from here a lease found gone is this settle's doing
    try {
      const outcome = e.released ? 'released' : e.lost ? 'lost' : await this.#settle(e, ok, err);
      this.#notifySettled(e.message, outcome);
    } catch (settleErr) {
      // The message stays leased and comes back when its lease runs out.
      this.#log(`settling message ${e.message.id} of ${this.#queue} failed`, settleErr);
    }
    e.done = true;
    this.#held.delete(e.message.id);
    this.#running--;
    if (this.#running === 0) {
      for (const w of this.#idleWaiters.splice(0)) w();
    }
    this.#dispatch();
    this.#wake();
  }

  async #settle(e, ok, err) {
    const m = e.message;
    if (ok) {
      const r = await this.#pool.query(`SELECT ${this.#s}.pgflow_ack($1::bigint, $2::bigint) AS ok`, [m.id, m.claimToken]);
      return r.rows[0].ok || e.ackedTx ? 'ack' : 'lost';
    }
    const f = failure(err);
    const r = await this.#pool.query(
      `SELECT ${this.#s}.pgflow_fail($1::bigint, $2::bigint, $3::text, $4::integer, $5::boolean) AS outcome`,
      [m.id, m.claimToken, f.text, f.retryAfterMs, f.permanent]);
    // After an ackTx whose transaction committed, the message is gone.
    return r.rows[0].outcome ?? (e.ackedTx ? 'ack' : 'lost');
  }

  #notifySettled(message, outcome) {
    try {
      this.#onSettle(message, outcome);
    } catch (err) {
      this.#log('onSettle threw', err);
    }
  }

  // The heartbeat: one statement extends every held lease; a message whose
  // token no longer holds it (its lease expired and it was rescued) is
  // dropped, and its handler's signal aborts.
  async #extendLeases() {
    if (this.#heartbeatBusy || this.#held.size === 0) return;
    this.#heartbeatBusy = true;
    const entries = [...this.#held.values()];
    try {
      const r = await this.#pool.query(
        `SELECT t.id, ${this.#s}.pgflow_extend(t.id, t.token, $3::integer) AS ok
         FROM unnest($1::bigint[], $2::bigint[]) AS t(id, token)`,
        [entries.map((e) => e.message.id), entries.map((e) => e.message.claimToken), this.#leaseMs]);
      const lost = new Set(r.rows.filter((row) => !row.ok).map((row) => row.id));
      for (const e of entries) {
        if (!lost.has(e.message.id) || e.settling || e.ackedTx || e.released) continue;
        e.lost = true;
        if (e.started) {
          e.ac.abort(new Error('pgflow: lease lost'));
        } else {
          this.#buffer = this.#buffer.filter((b) => b !== e);
          this.#held.delete(e.message.id);
          this.#notifySettled(e.message, 'lost');
        }
        this.#log(`lease of message ${e.message.id} of ${this.#queue} lost`, null);
      }
    } catch (err) {
      this.#log(`extending leases on ${this.#queue} failed`, err);
    } finally {
      this.#heartbeatBusy = false;
    }
  }

  // Messages whose lease ran out, of any queue of the schema, become
  // pending again (or dead, out of retries), as the Go consumers do: any
  // live consumer rescues a crashed one's messages.
  async #rescue() {
    if (this.#rescueBusy || this.#stopping) return;
    this.#rescueBusy = true;
    try {
      await this.#pool.query(`SELECT count(*) FROM ${this.#s}.pgflow_rescue(100)`);
    } catch (err) {
      this.#log('rescuing expired leases failed', err);
    } finally {
      this.#rescueBusy = false;
    }
  }

  async #release(entries) {
    if (entries.length === 0) return 0;
    try {
      const r = await this.#pool.query(
        `SELECT count(*) FILTER (WHERE ${this.#s}.pgflow_release(t.id, t.token))::integer AS n
         FROM unnest($1::bigint[], $2::bigint[]) AS t(id, token)`,
        [entries.map((e) => e.message.id), entries.map((e) => e.message.claimToken)]);
      return r.rows[0].n;
    } catch (err) {
      this.#log(`releasing ${entries.length} messages of ${this.#queue} failed; they come back when their leases run out`, err);
      return 0;
    }
  }

  // The listener holds one pooled connection that LISTENs; on losing it, it
  // reconnects with backoff, and wakes the loop (notifications sent
  // meanwhile are lost). Polling covers the gaps.
  async #connectListener(failures) {
    if (this.#stopping) return;
    let client;
    try {
      client = await this.#pool.connect();
      client.on('notification', (n) => { if (n.payload === this.#queue) this.#wake(); });
      client.on('error', (err) => this.#listenerLost(client, err, 0));
      await client.query(`LISTEN "${channelFor(this.#schema)}"`);
    } catch (err) {
      if (client) client.release(true);
      if (this.#stopping) return;
      this.#log('LISTEN failed', err);
      this.#listenerRetry = setTimeout(() => this.#connectListener(failures + 1), Math.min(100 * 2 ** failures, 10000));
      return;
    }
    if (this.#stopping) {
      client.release(true);
      return;
    }
    this.#listener = client;
    this.#wake();
  }

  #listenerLost(client, err, failures) {
    if (this.#listener !== client) return;
    this.#listener = null;
    client.release(true);
    if (this.#stopping) return;
    if (this.#listening.settled) this.#listening = pending();
    this.#log('LISTEN connection lost; reconnecting', err);
    this.#listenerRetry = setTimeout(() => this.#connectListener(failures + 1), 100);
  }

  #wake() {
    this.#wakeFlag = true;
    if (this.#wakeResolve) {
      const r = this.#wakeResolve;
      this.#wakeResolve = null;
      r();
    }
  }

  // sleep returns after ms, or earlier on a wake-up (also one that came
  // while the loop was busy).
  #sleep(ms) {
    if (this.#wakeFlag || this.#stopping) {
      this.#wakeFlag = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.#wakeResolve = null; resolve(); }, ms);
      this.#wakeResolve = () => { clearTimeout(t); this.#wakeFlag = false; resolve(); };
    });
  }
}

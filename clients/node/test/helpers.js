// Test helpers: a pgflow schema of the test file's own on the real server,
// created with pgflow's Go migrations and dropped afterwards.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { Producer } from '../src/index.js';

export const databaseURL = process.env.PGFLOW_TEST_DATABASE_URL
  || 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

// createSchema migrates a fresh schema and returns { schema, pool, producer,
// drop }: a pool on the server and a Producer on the schema, both ended by
// drop, which also drops the schema.
export function createSchema() {
  const schema = `pgflow_node_${randomBytes(4).toString('hex')}`;
  // `go run` caches the built helper: after the first run this costs
  // about a second.
  execFileSync('go', ['run', './clients/internal/schemactl', '-url', databaseURL, '-schema', schema, 'up'], {
    cwd: repoRoot, env: { ...process.env, GOWORK: 'off' }, stdio: ['ignore', 'ignore', 'inherit'],
  });
  const pool = new pg.Pool({ connectionString: databaseURL, max: 4 });
  const producer = new Producer({ pool, schema });
  const drop = async () => {
    await producer.end();
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pool.end();
  };
  return { schema, pool, producer, drop };
}

let seq = 0;
export function queueName(prefix = 'q') {
  seq++;
  return `${prefix}_${seq}_${randomBytes(2).toString('hex')}`;
}

// declareQueue sets a queue's retry settings.
export async function declareQueue(pool, schema, queue, { maxRetries = 3, retryDelayMs = 1000 } = {}) {
  await pool.query(
    `INSERT INTO "${schema}".pgflow_queues (queue_name, max_retries, retry_delay_ms) VALUES ($1, $2, $3)
     ON CONFLICT (queue_name) DO UPDATE SET max_retries = excluded.max_retries, retry_delay_ms = excluded.retry_delay_ms`,
    [queue, maxRetries, retryDelayMs]);
}

// deferred returns a promise with its resolve function.
export function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

// waitFor polls the database-side condition fn every intervalMs until it
// returns a truthy value, and returns that; tests use it only for state no
// event reports (rows written by SQL). It fails naming what it waited for
// when timeoutMs passes first.
export async function waitFor(fn, what, { timeoutMs = 10000, intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

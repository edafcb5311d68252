// The connection pool a producer or worker uses: the caller's, or one of
// its own that it closes on end()/stop().

import pg from 'pg';

import { InputError } from './errors.js';

export function openPool({ pool, connectionString, poolSize }) {
  if (pool) {
    if (typeof pool.query !== 'function' || typeof pool.connect !== 'function') {
      throw new InputError('pool', 'pool must be a pg.Pool');
    }
    return { pool, owned: false };
  }
  if (typeof connectionString !== 'string' || connectionString === '') {
    throw new InputError('connectionString', 'pass a pg.Pool as pool or a connectionString');
  }
  const owned = new pg.Pool({ connectionString, max: poolSize });
  // An idle pooled connection that the server drops emits 'error' on the
  // pool; without a listener that would end the process. The next query
  // simply opens a new connection.
  owned.on('error', () => {});
  return { pool: owned, owned: true };
}

// idText keeps a bigint id or claim token exact: pg returns int8 as a
// string, and a caller may hold one as a string, a bigint or a (safe)
// number.
export function idText(value, field) {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  if (typeof value === 'string' && /^-?[0-9]{1,19}$/.test(value)) return value;
  throw new InputError(field, `${field} must be an integer id (string or bigint), not ${typeof value === 'string' ? JSON.stringify(value) : value}`);
}

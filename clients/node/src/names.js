// Names and values checked before they reach the database, with the rules
// the Go library applies, so that a bad input fails at once with a clear
// error and writes nothing.

import { InputError } from './errors.js';

const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/;
const queuePattern = /^[A-Za-z0-9_.:-]{1,128}$/;

// quotedSchema returns the schema as a quoted SQL identifier. The pattern
// admits no quote, so quoting cannot be escaped.
export function quotedSchema(schema) {
  if (typeof schema !== 'string' || !schemaPattern.test(schema)) {
    throw new InputError('schema', `invalid schema name ${JSON.stringify(schema)}: want 1-63 characters of [a-z0-9_], starting with a letter or underscore`);
  }
  return `"${schema}"`;
}

// The NOTIFY channel pgflow announces new messages on: one per schema, the
// payload is the queue's name.
export function channelFor(schema) {
  return `pgflow.${schema}`;
}

export function checkQueue(name, field = 'queue') {
  if (typeof name !== 'string' || !queuePattern.test(name)) {
    throw new InputError(field, `invalid ${field} name ${JSON.stringify(name)}: want 1-128 characters of [A-Za-z0-9_.:-]`);
  }
  return name;
}

// encodePayload returns the payload as JSON text: anything JSON can hold,
// but not undefined, functions, symbols or BigInts.
export function encodePayload(payload, field = 'payload') {
  let text;
  try {
    text = JSON.stringify(payload);
  } catch (err) {
    throw new InputError(field, `${field} is not JSON-serialisable: ${err.message}`);
  }
  if (text === undefined) {
    throw new InputError(field, `${field} is not JSON-serialisable: ${typeof payload}`);
  }
  return text;
}

// encodeHeaders returns the headers as JSON text: an object of strings.
export function encodeHeaders(headers, field = 'headers') {
  if (headers === undefined || headers === null) return '{}';
  if (typeof headers !== 'object' || Array.isArray(headers)) {
    throw new InputError(field, `${field} must be an object of strings`);
  }
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== 'string') {
      throw new InputError(field, `${field}[${JSON.stringify(k)}] must be a string, not ${typeof v}`);
    }
  }
  return JSON.stringify(headers);
}

export function checkPriority(priority) {
  if (priority === undefined || priority === null) return null;
  if (!Number.isInteger(priority) || priority < -32768 || priority > 32767) {
    throw new InputError('priority', `priority must be an integer in [-32768, 32767], not ${priority}`);
  }
  return priority;
}

export function checkDelay(delayMs) {
  if (delayMs === undefined || delayMs === null) return 0;
  if (!Number.isSafeInteger(delayMs) || delayMs < 0) {
    throw new InputError('delayMs', `delayMs must be a non-negative integer, not ${delayMs}`);
  }
  return delayMs;
}

export function checkDedupKey(key) {
  if (key === undefined || key === null) return null;
  if (typeof key !== 'string' || key === '') {
    throw new InputError('dedupKey', 'dedupKey must be a non-empty string');
  }
  return key;
}

export function checkPositiveInt(value, field, max = 2147483647) {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new InputError(field, `${field} must be an integer in [1, ${max}], not ${value}`);
  }
  return value;
}

// Errors a handler throws to steer what happens to its message, and the
// error for bad input.

// PermanentError sends the message straight to the dead-letter queue,
// whatever retries it has left.
export class PermanentError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

// RetryAfterError retries the message after retryAfterMs instead of the
// queue's backoff (still dead-lettered when it is out of retries).
export class RetryAfterError extends Error {
  constructor(retryAfterMs, message, options) {
    super(message, options);
    if (!Number.isInteger(retryAfterMs) || retryAfterMs < 0 || retryAfterMs > 2147483647) {
      throw new InputError('retryAfterMs', `retryAfterMs must be a non-negative 32-bit integer, not ${retryAfterMs}`);
    }
    this.name = 'RetryAfterError';
    this.retryAfterMs = retryAfterMs;
  }
}

// LeaseLostError: an acknowledgement in the caller's transaction (ackTx)
// found that this delivery no longer holds the message; roll back.
export class LeaseLostError extends Error {
  constructor(id) {
    super(`pgflow: the lease of message ${id} was lost; it goes to another delivery`);
    this.name = 'LeaseLostError';
    this.messageId = id;
  }
}

// InputError reports an argument pgflow refused before writing anything.
export class InputError extends Error {
  constructor(field, message) {
    super(`pgflow: ${message}`);
    this.name = 'InputError';
    this.field = field;
  }
}

// failure maps what a handler threw to pgflow_fail's arguments. Besides the
// classes above, any error with permanent === true or a numeric
// retryAfterMs is understood, so other libraries' errors can opt in.
export function failure(err) {
  let text;
  if (err instanceof Error) {
    text = err.message || err.name;
  } else {
    text = String(err);
  }
  const permanent = err instanceof PermanentError || err?.permanent === true;
  let retryAfterMs = null;
  if (Number.isInteger(err?.retryAfterMs) && err.retryAfterMs >= 0 && err.retryAfterMs <= 2147483647) {
    retryAfterMs = err.retryAfterMs;
  }
  return { text: text || 'error', permanent, retryAfterMs };
}

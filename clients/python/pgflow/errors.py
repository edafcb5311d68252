"""Errors a handler raises to steer what happens to its message, and the
error for bad input."""


class InputError(ValueError):
    """An argument pgflow refused before writing anything."""

    def __init__(self, field, message):
        super().__init__("pgflow: " + message)
        self.field = field


class LeaseLostError(Exception):
    """An acknowledgement in the caller's transaction (Worker.ack_tx) found
    that this delivery no longer holds the message; roll back."""

    def __init__(self, message_id):
        super().__init__("pgflow: the lease of message %d was lost; it goes to another delivery" % message_id)
        self.message_id = message_id


class PermanentError(Exception):
    """Sends the message straight to the dead-letter queue, whatever
    retries it has left."""


class RetryAfter(Exception):
    """Retries the message after delay_ms instead of the queue's backoff
    (still dead-lettered when it is out of retries)."""

    def __init__(self, delay_ms, message="retry later"):
        if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or not 0 <= delay_ms <= 2147483647:
            raise InputError("delay_ms", "delay_ms must be a non-negative 32-bit integer, not %r" % (delay_ms,))
        super().__init__(message)
        self.delay_ms = delay_ms


def failure(exc):
    """Maps what a handler raised to pgflow_fail's (error, retry_after_ms,
    permanent). Besides the classes above, an exception with a true
    `permanent` attribute or an integer `retry_after_ms` is understood, so
    other libraries' errors can opt in."""
    text = str(exc) or type(exc).__name__
    permanent = isinstance(exc, PermanentError) or getattr(exc, "permanent", False) is True
    delay = getattr(exc, "delay_ms", None) if isinstance(exc, RetryAfter) else getattr(exc, "retry_after_ms", None)
    if not (isinstance(delay, int) and not isinstance(delay, bool) and 0 <= delay <= 2147483647):
        delay = None
    return text, delay, permanent

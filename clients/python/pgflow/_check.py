"""Names and values checked before they reach the database, with the rules
the Go library applies, so that a bad input fails at once with a clear
error and writes nothing."""

import json
import re

from .errors import InputError

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_QUEUE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def quoted_schema(schema):
    """The schema as a quoted SQL identifier; the pattern admits no quote."""
    if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
        raise InputError("schema", "invalid schema name %r: want 1-63 characters of [a-z0-9_], "
                         "starting with a letter or underscore" % (schema,))
    return '"%s"' % schema


def channel(schema):
    """The NOTIFY channel pgflow announces new messages on: one per schema,
    the payload is the queue's name."""
    return "pgflow." + schema


def queue(name, field="queue"):
    if not isinstance(name, str) or not _QUEUE.fullmatch(name):
        raise InputError(field, "invalid %s name %r: want 1-128 characters of [A-Za-z0-9_.:-]" % (field, name))
    return name


def payload(value, field="payload"):
    """JSON text of value (NaN and infinities are not JSON)."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(field, "%s is not JSON-serialisable: %s" % (field, e)) from None


def headers(value, field="headers"):
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InputError(field, "%s must be a dict of strings" % field)
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InputError(field, "%s[%r] must be a string, not %s" % (field, k, type(v).__name__))
    return json.dumps(value)


def priority(value):
    if value is None:
        return None
    if not _is_int(value) or not -32768 <= value <= 32767:
        raise InputError("priority", "priority must be an integer in [-32768, 32767], not %r" % (value,))
    return value


def delay(value):
    if value is None:
        return 0
    if not _is_int(value) or value < 0 or value > 2**62:
        raise InputError("delay_ms", "delay_ms must be a non-negative integer, not %r" % (value,))
    return value


def dedup_key(value):
    if value is None:
        return None
    if not isinstance(value, str) or value == "":
        raise InputError("dedup_key", "dedup_key must be a non-empty string")
    return value


def positive(value, field, maximum=2147483647):
    if not _is_int(value) or not 1 <= value <= maximum:
        raise InputError(field, "%s must be an integer in [1, %d], not %r" % (field, maximum, value))
    return value


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)

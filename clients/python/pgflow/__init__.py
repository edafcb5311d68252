"""pgflow for Python: produce to and consume from pgflow queues, alongside
Go and Node services, through pgflow's SQL functions. Built on psycopg 3
with threads; see README.md."""

from .errors import InputError, LeaseLostError, PermanentError, RetryAfter
from .producer import Producer
from .worker import Message, StopResult, Worker

__all__ = ["InputError", "LeaseLostError", "Message", "PermanentError", "Producer", "RetryAfter", "StopResult", "Worker"]

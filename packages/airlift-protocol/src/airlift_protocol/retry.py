"""The one retry policy of every Airlift HTTP path (Airflow REST in airlift-client, Dagster GraphQL in
airlift-airflow): which failures are retried, how long to wait, and when to give up.

Pure logic, no HTTP imports: callers classify their own failures (a connection error, a status code,
a ``Retry-After`` header) and ask the policy what to do. Retries use capped exponential backoff with
full jitter, honour ``Retry-After`` (delta-seconds or HTTP date, capped), and stop at
``max_attempts`` or when the next wait would pass the per-call ``deadline``. Only idempotent
requests are retried blindly; a non-idempotent one (launching a run) must be resolved by a lookup
first. ``sleep``, ``clock`` and ``rand`` are injectable so tests never wait.

>>> policy = RetryPolicy(max_attempts=3, sleep=lambda s: None, rand=lambda: 1.0)
>>> [policy.backoff(a) for a in (1, 2, 3)]
[0.5, 1.0, 2.0]
>>> policy.should_retry_status(503), policy.should_retry_status(404)
(True, False)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

__all__ = ["NO_RETRY", "RETRY_STATUSES", "RetryPolicy", "Retryable"]

T = TypeVar("T")

#: HTTP statuses worth retrying: rate limiting and the transient server/gateway errors.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Retryable(Exception):
    """One attempt failed in a way worth retrying (connection error, timeout, 429, 5xx): ``problem``
    says how (no secrets), ``retry_after`` is the server's ``Retry-After`` header; ``attempts`` counts
    the attempts so far. When the policy gives up, :meth:`RetryPolicy.call` raises it.

    >>> str(Retryable("HTTP 503", retry_after="2"))
    'HTTP 503'
    """

    def __init__(self, problem: str, *, retry_after: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after
        self.attempts = 0


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent requests are retried.

    ``deadline`` (seconds, ``None`` for none) bounds one call including all its retries: a retry whose
    wait would end past it is not attempted.

    >>> clock = iter([0.0, 0.0, 9.0]).__next__
    >>> policy = RetryPolicy(max_attempts=5, deadline=9.5, clock=clock, rand=lambda: 1.0)
    >>> start = policy.start()
    >>> policy.delay_for(1, start=start), policy.delay_for(2, start=start)
    (0.5, None)
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    deadline: float | None = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    asleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): full jitter over a capped exponential."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return float(cap * self.rand())

    def retry_after(self, header: str | None) -> float | None:
        """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; None if absent/invalid."""
        if not header:
            return None
        header = header.strip()
        try:
            seconds = float(header)
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        if seconds != seconds:  # NaN
            return None
        return max(0.0, min(seconds, self.max_retry_after))

    @staticmethod
    def should_retry_status(status: int) -> bool:
        """True for 429 and the transient 5xx statuses."""
        return status in RETRY_STATUSES

    def start(self) -> float:
        """The clock reading a call starts at (pass it to :meth:`delay_for`)."""
        return self.clock()

    def delay_for(self, attempt: int, *, start: float, retry_after: str | None = None) -> float | None:
        """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based), or
        ``None`` when the call must give up: attempts exhausted or the wait would pass the deadline."""
        if attempt >= self.max_attempts:
            return None
        server_wait = self.retry_after(retry_after)
        delay = self.backoff(attempt) if server_wait is None else server_wait
        if self.deadline is not None and self.clock() + delay - start > self.deadline:
            return None
        return delay

    def call(self, attempt: Callable[[], T], *, on_retry: Callable[[Retryable, float], None] | None = None) -> T:
        """THE retry loop: run ``attempt`` until it returns, raises something other than
        :class:`Retryable`, or the policy gives up (then its last :class:`Retryable` is raised, with
        ``attempts`` set). ``on_retry(error, delay)`` is told before each wait.

        >>> tries = iter([Retryable("HTTP 503"), "ok"])
        >>> def attempt():
        ...     got = next(tries)
        ...     if isinstance(got, Exception):
        ...         raise got
        ...     return got
        >>> RetryPolicy(sleep=lambda s: None).call(attempt)
        'ok'
        """
        start, number = self.start(), 0
        while True:
            number += 1
            try:
                return attempt()
            except Retryable as e:
                failed, delay = e, self._next(e, number, start)
            if on_retry is not None:
                on_retry(failed, delay)
            self.sleep(delay)

    async def acall(
        self, attempt: Callable[[], Awaitable[T]], *, on_retry: Callable[[Retryable, float], None] | None = None
    ) -> T:
        """:meth:`call` for a coroutine (waits with ``asleep``, never blocking the event loop)."""
        start, number = self.start(), 0
        while True:
            number += 1
            try:
                return await attempt()
            except Retryable as e:
                failed, delay = e, self._next(e, number, start)
            if on_retry is not None:
                on_retry(failed, delay)
            await self.asleep(delay)

    def _next(self, error: Retryable, number: int, start: float) -> float:
        error.attempts = number
        delay = self.delay_for(number, start=start, retry_after=error.retry_after)
        if delay is None:
            raise error
        return delay


#: A policy that never retries.
NO_RETRY = RetryPolicy(max_attempts=1)

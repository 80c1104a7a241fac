"""Retry policy for idempotent requests: connection errors, 429 (honouring Retry-After) and 5xx,
with capped exponential backoff and full jitter. The sleep function and random source are
injectable so tests never wait."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent requests are retried.

    >>> policy = RetryPolicy(max_attempts=3, sleep=lambda s: None, rand=lambda: 1.0)
    >>> [policy.backoff(a) for a in (1, 2, 3)]
    [0.5, 1.0, 2.0]
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

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
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        return max(0.0, min(seconds, self.max_retry_after))

    @staticmethod
    def should_retry_status(status: int) -> bool:
        """True for 429 and the transient 5xx statuses."""
        return status in RETRY_STATUSES


NO_RETRY = RetryPolicy(max_attempts=1)

"""Retry policy for idempotent requests; the policy itself lives in :mod:`airlift_protocol.retry` so
the Airflow side (the Dagster GraphQL client of ``DagsterOperator``) shares it.

>>> from airlift_client.retry import RetryPolicy
>>> RetryPolicy(max_attempts=2).max_attempts
2
"""

from __future__ import annotations

from airlift_protocol.retry import NO_RETRY, RETRY_STATUSES, RetryPolicy

__all__ = ["NO_RETRY", "RETRY_STATUSES", "RetryPolicy"]

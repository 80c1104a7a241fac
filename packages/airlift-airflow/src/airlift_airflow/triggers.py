"""``DagsterRunTrigger``: waits for Dagster runs from Airflow's triggerer (``deferrable=True``).

Polls ``runOrError`` with async HTTP (httpx, which Airflow 2.7+ and 3 ship) under the same retry
policy as the worker side, and fires one event with every run's final status. The token is never
serialized: the triggerer reads it from the Airflow connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airlift_airflow.dagster_api import FINISHED_STATUSES, RUN_QUERY
from airlift_airflow.hook import DEFAULT_CONN_ID, DagsterHook
from airlift_airflow.version_compat import BaseTrigger, TriggerEvent
from airlift_protocol import RetryPolicy

__all__ = ["DagsterRunTrigger"]


class DagsterRunTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires when every run in ``run_ids`` has ended (or at ``end_time``, a Unix time).

    The event payload is ``{"statuses": {run_id: status}, "timed_out": bool}``, or
    ``{"error": message}`` when Dagster cannot be reached.

    >>> DagsterRunTrigger(run_ids=["abc"], poll_interval=5.0).serialize()[0]
    'airlift_airflow.triggers.DagsterRunTrigger'
    """

    def __init__(
        self,
        *,
        run_ids: Sequence[str],
        dagster_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 2.0,
        end_time: float | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.run_ids = list(run_ids)
        self.dagster_conn_id = dagster_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.request_timeout = request_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airlift_airflow.triggers.DagsterRunTrigger",
            {
                "run_ids": self.run_ids,
                "dagster_conn_id": self.dagster_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "request_timeout": self.request_timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        hook = DagsterHook(self.dagster_conn_id)
        try:
            url, token = await asyncio.to_thread(hook.url_and_token)
        except Exception as e:  # the connection cannot be read: fail the task with the reason
            yield TriggerEvent({"error": str(e)})  # type: ignore[no-untyped-call]
            return
        endpoint = f"{url.rstrip('/')}/graphql"
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Dagster-Cloud-Api-Token"] = token
        policy = RetryPolicy()
        statuses: dict[str, str] = {}
        async with httpx.AsyncClient(timeout=self.request_timeout, headers=headers) as client:
            while True:
                for run_id in self.run_ids:
                    if statuses.get(run_id) in FINISHED_STATUSES:
                        continue
                    try:
                        statuses[run_id] = await _status(client, endpoint, run_id, policy)
                    except _Unreachable as e:
                        yield TriggerEvent({"error": str(e)})  # type: ignore[no-untyped-call]
                        return
                self.log.info("Polled Dagster from the triggerer: %s",
                              ", ".join(f"{url.rstrip('/')}/runs/{r} {s}" for r, s in statuses.items()))
                done = all(s in FINISHED_STATUSES for s in statuses.values())
                timed_out = not done and self.end_time is not None and time.time() >= self.end_time
                if done or timed_out:
                    yield TriggerEvent({"statuses": statuses, "timed_out": timed_out})  # type: ignore[no-untyped-call]
                    return
                await asyncio.sleep(self.poll_interval)


class _Unreachable(Exception):
    pass


async def _status(client: Any, endpoint: str, run_id: str, policy: RetryPolicy) -> str:
    import httpx

    start = policy.start()
    attempt = 0
    while True:
        attempt += 1
        retry_after = None
        try:
            response = await client.post(endpoint, json={"query": RUN_QUERY, "variables": {"runId": run_id}})
        except httpx.TransportError as e:
            problem = type(e).__name__
        else:
            if not policy.should_retry_status(response.status_code):
                if response.status_code >= 400:
                    raise _Unreachable(f"Dagster at {endpoint} answered HTTP {response.status_code} for run {run_id}")
                try:
                    result = response.json()["data"]["runOrError"]
                except (ValueError, KeyError, TypeError) as e:
                    raise _Unreachable(f"Dagster at {endpoint} answered something unexpected for run {run_id}") from e
                if result.get("__typename") != "Run":
                    raise _Unreachable(f"Dagster run {run_id} at {endpoint}: {result.get('message', result.get('__typename'))}")
                return str(result["status"])
            problem = f"HTTP {response.status_code}"
            retry_after = response.headers.get("Retry-After")
        delay = policy.delay_for(attempt, start=start, retry_after=retry_after)
        if delay is None:
            raise _Unreachable(f"cannot reach Dagster's GraphQL API at {endpoint} after {attempt} attempt(s) ({problem})")
        await asyncio.sleep(delay)

"""``DagsterRunTrigger``: waits for Dagster runs from Airflow's triggerer (``deferrable=True``).

The trigger only calls :class:`~airlift_airflow.DagsterHook`'s async methods, built with the
operator's request settings: the worker and the triggerer share one retry policy and one set of
waiting rules (:mod:`airlift_airflow.waiting`: Dagster's run retries followed, an unreachable Dagster
ridden out for ``unreachable_grace`` seconds). The token is never serialized: the triggerer reads it
from the Airflow connection.

On Airflow 3, marking a deferred task failed or success, or clearing it, calls the trigger's
``on_kill``: it terminates the runs the task was waiting for. Airflow 2 has no such call; there the
next try or the cleared task's new try finds the earlier runs (see :class:`~airlift_airflow.DagsterHook`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airlift_airflow.hook import DEFAULT_CONN_ID, DagsterHook
from airlift_airflow.version_compat import BaseTrigger, TriggerEvent
from airlift_airflow.waiting import DEFAULT_UNREACHABLE_GRACE, RunWaiter

__all__ = ["DagsterRunTrigger"]


class DagsterRunTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires when every run in ``run_ids`` has ended (or at ``end_time``, a Unix time).

    The event payload is ``{"results": [[run_id, status, why_stopped_or_None], ...]}`` (the last run of
    each Dagster retry chain), or ``{"error": message, "run_ids": [...]}`` when Dagster cannot be asked.

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
        request_attempts: int = 5,
        request_backoff: float = 1.0,
        unreachable_grace: float = DEFAULT_UNREACHABLE_GRACE,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.run_ids = list(run_ids)
        self.dagster_conn_id = dagster_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.request_timeout = request_timeout
        self.request_attempts = request_attempts
        self.request_backoff = request_backoff
        self.unreachable_grace = unreachable_grace
        self._waiter: RunWaiter | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airlift_airflow.triggers.DagsterRunTrigger",
            {
                "run_ids": self.run_ids,
                "dagster_conn_id": self.dagster_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "request_timeout": self.request_timeout,
                "request_attempts": self.request_attempts,
                "request_backoff": self.request_backoff,
                "unreachable_grace": self.unreachable_grace,
            },
        )

    def hook(self) -> DagsterHook:
        """The hook, with the operator's request settings."""
        return DagsterHook.with_request_settings(self.dagster_conn_id, timeout=self.request_timeout,
                                                 attempts=self.request_attempts, backoff=self.request_backoff)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self.hook()
        try:
            client = await hook.aget_conn()
            self._waiter = RunWaiter(self.run_ids, grace=self.unreachable_grace, deadline=self.end_time, clock=time.time,
                                     url=client.url, say=self.log.info, warn=self.log.warning)
            outcome = await hook.await_runs(self._waiter, poll_interval=self.poll_interval)
        except Exception as e:  # the connection cannot be read, Dagster refused: fail the task with the reason
            yield TriggerEvent({"error": str(e), "run_ids": self.current_run_ids()})  # type: ignore[no-untyped-call]
            return
        finally:
            await hook.aclose()
        self.log.info("Dagster run(s) ended or the wait stopped: %s",
                      ", ".join(f"{client.run_url(r)} {s}" for r, s, _ in outcome))
        yield TriggerEvent({"results": [list(o) for o in outcome]})  # type: ignore[no-untyped-call]

    def current_run_ids(self) -> list[str]:
        """The runs awaited now (after Dagster's retries)."""
        return self._waiter.current_run_ids() if self._waiter is not None else list(self.run_ids)

    async def on_kill(self) -> None:
        """Airflow 3 calls this when a user marks the deferred task failed or success, or clears it:
        terminate the Dagster runs it was waiting for, and say so."""
        hook = self.hook()
        try:
            client = await hook.aget_conn()
            for run_id, problem in (await hook.aterminate(self.current_run_ids())).items():
                if problem is None:
                    self.log.warning("Task killed: asked Dagster to terminate run %s: %s", run_id, client.run_url(run_id))
                else:
                    self.log.error("Task killed: could not terminate Dagster run %s (%s): %s", run_id, problem,
                                   client.run_url(run_id))
        finally:
            await hook.aclose()

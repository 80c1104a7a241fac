"""What waiting on a task try's Dagster runs decides, as pure steps: the worker (``DagsterHook.wait``)
and the triggerer (``DagsterHook.await_runs``) make the requests and feed the answers in.

The rules:

- a run that ended SUCCESS, FAILURE or CANCELED ends its wait, except a failed run Dagster retries
  (run retries: the failed run carries ``dagster/will_retry=true``; a FAILURE without that verdict is
  polled again for ``FAILURE_SETTLE`` seconds, Dagster writes it just after the status): the wait follows Dagster's retry
  (``dagster/auto_retry_run_id``) and the retry's outcome is the outcome. A retry Dagster announced but
  did not launch within ``grace`` seconds ends the wait with the failure;
- Dagster unreachable (connection errors, timeouts, 429/5xx after the request's own retries) does not
  end the wait until it has lasted ``grace`` seconds (a webserver restart or deploy is survived); the
  first failure and the recovery are logged;
- ``deadline`` (the operator's ``run_timeout``) ends the wait whatever the runs do.

>>> waiter = RunWaiter(["r1"], grace=60.0, deadline=None, clock=lambda: 0.0, url="http://dagster:3000")
>>> waiter.seen(waiter.pending()[0], DagsterRun(run_id="r1", status="SUCCESS", tags={}))
>>> waiter.done(), waiter.outcome()
(True, [('r1', 'SUCCESS', None)])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airlift_airflow.dagster_api import WILL_RETRY_TAG, DagsterRun

__all__ = ["DEFAULT_UNREACHABLE_GRACE", "RunWaiter", "RunWatch"]

log = logging.getLogger("airlift_airflow")

#: Seconds a waiting task keeps polling an unreachable Dagster before it gives up (``unreachable_grace``).
DEFAULT_UNREACHABLE_GRACE = 300.0
#: Seconds a FAILURE without Dagster's ``dagster/will_retry`` verdict is polled again before it counts as
#: final: Dagster writes the run's status and then, separately, whether it retries it.
FAILURE_SETTLE = 10.0


@dataclass
class RunWatch:
    """One awaited run: ``first`` the run the try launched or re-attached to, ``current`` the run of
    its Dagster retry chain awaited now."""

    first: str
    current: str
    status: str = "QUEUED"
    ended: bool = False
    error: str | None = None
    retry_announced_at: float | None = None
    failed_at: float | None = None


class RunWaiter:
    """The state of one wait (see the module docstring). ``say``/``warn`` log where the task's log is."""

    def __init__(
        self,
        run_ids: Sequence[str],
        *,
        grace: float,
        deadline: float | None,
        clock: Callable[[], float],
        url: str,
        say: Callable[..., None] = log.info,
        warn: Callable[..., None] = log.warning,
    ) -> None:
        self.watches = [RunWatch(first=r, current=r) for r in run_ids]
        self.grace = grace
        self.deadline = deadline
        self.clock = clock
        self.url = url
        self.say = say
        self.warn = warn
        self.unreachable_since: float | None = None
        self.stopped: str | None = None

    def pending(self) -> list[RunWatch]:
        return [w for w in self.watches if not w.ended]

    def current_run_ids(self) -> list[str]:
        """The runs awaited now (after following Dagster's retries), for terminating them."""
        return [w.current for w in self.watches]

    def seen(self, watch: RunWatch, run: DagsterRun) -> None:
        """Dagster answered with ``run`` (the watch's current run)."""
        self.reached()
        if run.retried_by:
            self.say("Dagster run %s failed and Dagster retries it as run %s: %s/runs/%s",
                     run.run_id, run.retried_by, self.url, run.retried_by)
            watch.current, watch.status, watch.retry_announced_at = run.retried_by, "QUEUED", None
            return
        watch.status = run.status
        if run.status == "FAILURE" and WILL_RETRY_TAG not in run.tags:
            now = self.clock()
            watch.failed_at = now if watch.failed_at is None else watch.failed_at
            if now - watch.failed_at < FAILURE_SETTLE:
                return
        if run.retry_coming:
            now = self.clock()
            if watch.retry_announced_at is None:
                watch.retry_announced_at = now
                self.say("Dagster run %s failed; Dagster will retry it: waiting for the retry", run.run_id)
            elif now - watch.retry_announced_at >= self.grace:
                watch.ended = True
                watch.error = f"Dagster announced a retry of the run but launched none within {self.grace:g}s"
            return
        watch.ended = run.finished

    def reached(self) -> None:
        """A request got an answer: an outage (if any) is over."""
        if self.unreachable_since is not None:
            self.say("Dagster at %s answers again after %.0fs; still waiting", self.url, self.clock() - self.unreachable_since)
            self.unreachable_since = None

    def unreachable(self, problem: Exception) -> None:
        """A poll failed after the request's own retries (connection error, timeout, 429/5xx)."""
        now = self.clock()
        if self.unreachable_since is None:
            self.unreachable_since = now
            self.warn("Dagster at %s cannot be reached (%s); polling on for up to %gs (unreachable_grace) for run(s) %s",
                      self.url, problem, self.grace, ", ".join(self.current_run_ids()))
        elif now - self.unreachable_since >= self.grace:
            self.stopped = f"Dagster at {self.url} unreachable for {now - self.unreachable_since:.0f}s (unreachable_grace {self.grace:g}s): {problem}"

    def done(self) -> bool:
        """Whether the wait ends now (every run ended, the grace ran out, or the deadline passed)."""
        if not self.pending() or self.stopped:
            return True
        if self.deadline is not None and self.clock() >= self.deadline:
            self.stopped = "still in flight at run_timeout"
            return True
        return False

    def outcome(self) -> list[tuple[str, str, str | None]]:
        """(run id, status, why the wait stopped or ``None``) per awaited run: the last run of each chain."""
        return [(w.current, w.status, w.error if w.ended else self.stopped) for w in self.watches]

"""``DagsterHook``: the Airflow connection to Dagster and every request ``DagsterOperator`` makes.

The launch rule (one Dagster run per task try and code location):

- every run carries the identity tags (Airflow instance, DAG, run, task, try number, map index) and
  its code location; together they are the launch's idempotency key;
- the launch mutation is sent once; a launch that timed out, lost its connection or got a 5xx is
  resolved by looking the run up by those tags (for up to ``DEFAULT_LAUNCH_LOOKUP`` seconds) before it
  is sent again; should two runs still exist for one try, one is kept and the other terminated;
- for each code location, a try first looks at the runs of the current attempt (the tries since the
  task was last cleared, named by the attempt tag ``airlift/airflow_max_tries``; the rule is
  :func:`airlift_protocol.run_counts_for_try`): a run of its own try is used whatever its state; else
  a run of an earlier try still in flight (or failed with a Dagster retry coming) is re-attached to,
  and one that succeeded is reused; a failed or canceled one (or none) gets a new run. So a retry
  completes only the locations whose run is missing or failed. Dagster's own retries of a run copy its
  tags, so they belong to the same try;
- runs of tries before a clear are not used: a cleared task launches new runs, and terminates those
  runs still in flight (Airflow 2 does not tell a deferred task's trigger that it was cleared).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airlift_airflow.dagster_api import (
    DagsterAsset,
    DagsterGraphQLClient,
    DagsterRun,
    DagsterRunResult,
)
from airlift_airflow.errors import (
    DagsterApiError,
    DagsterLaunchUnknownError,
    DagsterUnreachableError,
)
from airlift_airflow.version_compat import BaseHook, connection_not_found_errors
from airlift_airflow.waiting import DEFAULT_UNREACHABLE_GRACE, RunWaiter
from airlift_protocol import (
    AIRFLOW_TRY_NUMBER_RUN_TAG,
    DAG_ID_TAG,
    DAGSTER_CODE_LOCATION_RUN_TAG,
    TASK_ID_TAG,
    Retryable,
    RetryPolicy,
    encode_tag_value,
    parse_dagster_run_tags,
    run_counts_for_try,
)
from airlift_protocol.tags import dag_asset_path

__all__ = [
    "DEFAULT_CONN_ID",
    "DEFAULT_LAUNCH_LOOKUP",
    "TOKEN_ENV",
    "URL_ENV",
    "DagsterHook",
    "LaunchPlan",
    "connection_url_and_token",
]

DEFAULT_CONN_ID = "dagster_default"
URL_ENV = "AIRLIFT_DAGSTER_URL"
TOKEN_ENV = "AIRLIFT_DAGSTER_API_TOKEN"
#: Seconds a launch whose answer was lost or late is looked up by its tags before it is sent again
#: (``launch_lookup_timeout``); Dagster may create the run well after the request timed out.
DEFAULT_LAUNCH_LOOKUP = 60.0
LAUNCH_LOOKUP_INTERVAL = 2.0
ROOT_RUN_ID_TAG = "dagster/root_run_id"

log = logging.getLogger("airlift_airflow")


def connection_url_and_token(conn: Any) -> tuple[str | None, str | None]:
    """URL and token of an Airflow connection: extra ``url`` or host/port/schema; password or
    extra ``api_token``.

    >>> from types import SimpleNamespace
    >>> conn = SimpleNamespace(host="dagster", port=3000, schema="", conn_type="http", password=None,
    ...                        extra_dejson={"api_token": "t"})
    >>> connection_url_and_token(conn)
    ('http://dagster:3000', 't')
    """
    extra: Mapping[str, Any] = getattr(conn, "extra_dejson", None) or {}
    url = extra.get("url")
    if not url and conn.host:
        host = str(conn.host).rstrip("/")
        if "://" not in host:
            scheme = extra.get("scheme") or ("https" if conn.conn_type == "https" else "http")
            host = f"{scheme}://{host}"
        url = host + (f":{conn.port}" if conn.port else "") + (f"/{conn.schema.strip('/')}" if conn.schema else "")
    token = conn.password or extra.get("api_token")
    return url, token


def _counts(run: DagsterRun, *, try_number: int, max_tries: int | None) -> bool:
    ref = parse_dagster_run_tags(run.tags)
    return ref is not None and run_counts_for_try(ref, try_number=try_number, max_tries=max_tries)


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class LaunchPlan:
    """What one task try does in one code location: ``launch`` a run, or use ``run`` (re-attach/reuse);
    ``stale`` are runs of an earlier attempt still in flight (the task was cleared meanwhile).

    >>> LaunchPlan("defs", "__repository__", [("a",)]).launch
    True
    """

    location: str
    repository: str
    paths: Sequence[tuple[str, ...]]
    run: DagsterRun | None = None
    reason: str = ""
    stale: Sequence[DagsterRun] = ()

    @property
    def launch(self) -> bool:
        return self.run is None


class DagsterHook(BaseHook):  # type: ignore[misc]
    """Talks to Dagster's GraphQL API for Airflow: owns the connection (default ``dagster_default``:
    host/port/schema or extra ``url``; password or extra ``api_token`` for Dagster+, sent as
    ``Dagster-Cloud-Api-Token``), one HTTP session and one retry policy (jitter, ``Retry-After``,
    deadline). Errors name the URL, never the token. Without the connection, ``AIRLIFT_DAGSTER_URL``
    and ``AIRLIFT_DAGSTER_API_TOKEN`` are read.

    >>> hook = DagsterHook(url="http://dagster:3000", api_token="secret")
    >>> hook.get_conn()
    DagsterGraphQLClient(url='http://dagster:3000')
    """

    conn_name_attr = "dagster_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "http"
    hook_name = "Dagster"

    def __init__(
        self,
        dagster_conn_id: str = DEFAULT_CONN_ID,
        *,
        url: str | None = None,
        api_token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.dagster_conn_id = dagster_conn_id
        self._url = url
        self._token = api_token
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._client: DagsterGraphQLClient | None = None
        self.unsettled: list[tuple[dict[str, str], str]] = []  # (tags, run kept) of launches whose answer was lost

    def __repr__(self) -> str:
        return f"DagsterHook(dagster_conn_id={self.dagster_conn_id!r})"

    def url_and_token(self) -> tuple[str, str | None]:
        """The Dagster URL and token (connection, else environment); a clear error when there is no URL."""
        url, token = self._url, self._token
        if not url:
            try:
                url, conn_token = connection_url_and_token(self.get_connection(self.dagster_conn_id))
                token = token or conn_token
            except connection_not_found_errors():
                pass
        url = url or os.environ.get(URL_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        if not url:
            raise DagsterApiError(
                f"no Dagster URL: create the Airflow connection {self.dagster_conn_id!r} "
                f"(e.g. AIRFLOW_CONN_{self.dagster_conn_id.upper()}='http://dagster-host:3000') or set {URL_ENV}"
            )
        return url, token

    @classmethod
    def with_request_settings(
        cls, dagster_conn_id: str = DEFAULT_CONN_ID, *, timeout: float = 30.0, attempts: int = 5, backoff: float = 1.0
    ) -> DagsterHook:
        """The hook with an operator's request settings (``request_timeout``, ``request_attempts``,
        ``request_backoff``): the worker and the triggerer build it the same way, so one budget serves both.

        >>> DagsterHook.with_request_settings("dagster_default", attempts=3).retry.max_attempts
        3
        """
        return cls(dagster_conn_id, timeout=timeout, retry=RetryPolicy(max_attempts=attempts, base_delay=backoff))

    def get_conn(self) -> DagsterGraphQLClient:
        """The GraphQL client (one per hook, so one HTTP session)."""
        if self._client is None:
            url, token = self.url_and_token()
            self._client = DagsterGraphQLClient(url, api_token=token, timeout=self.timeout, retry=self.retry)
        return self._client

    async def aget_conn(self) -> DagsterGraphQLClient:
        """:meth:`get_conn` from the triggerer's event loop (the connection is read in a thread)."""
        if self._client is None:
            url, token = await asyncio.to_thread(self.url_and_token)
            self._client = DagsterGraphQLClient(url, api_token=token, timeout=self.timeout, retry=self.retry)
        return self._client

    async def aclose(self) -> None:
        """Close the async HTTP session of :meth:`aget_conn` (the triggerer's event loop)."""
        if self._client is not None:
            await self._client.aclose()

    # -- assets ---------------------------------------------------------------------------------

    def task_assets(
        self,
        *,
        dag_id: str,
        task_id: str | None,
        asset_keys: Sequence[Sequence[str]] | None = None,
        instance_name: str | None = None,
        scan_if_unindexed: bool = True,
    ) -> list[DagsterAsset]:
        """The asset nodes of one Airflow task (``task_id=None``: those mapped to the DAG itself, with
        no task tag). With ``asset_keys`` only those nodes are asked for, tagged or not. Otherwise, with ``instance_name``, the task -> asset index on the DAG asset
        ``[instance_name, "dag", dag_id]`` names the keys (two small requests, whatever the size of
        the deployment; an asset built by several tasks is listed under each and carries no task
        tags); without it, or when Dagster has no such DAG asset, every asset node's tags are read
        (the slow path, logged), as when the index does not list the task and ``scan_if_unindexed``
        (assets of another code location may carry the task's tags).

        >>> DagsterHook(url="http://dagster:3000").task_assets(dag_id="d", task_id="t", instance_name="prod")  # doctest: +SKIP
        [DagsterAsset(path=('raw', 'customers'), ...)]
        """
        client = self.get_conn()
        wanted = {DAG_ID_TAG: encode_tag_value(dag_id)}
        if task_id is not None:
            wanted[TASK_ID_TAG] = encode_tag_value(task_id)
        without = () if task_id is not None else (TASK_ID_TAG,)
        what = f"Airflow task {dag_id}.{task_id}" if task_id is not None else f"Airflow DAG {dag_id}"
        paths: Sequence[Sequence[str]] | None = None if asset_keys is None else [tuple(k) for k in asset_keys]
        if paths is None and instance_name:
            index = client.task_asset_index(dag_asset_path(instance_name, dag_id))
            if index is not None:
                paths = index.get(task_id) or ([] if not scan_if_unindexed else None)
            else:
                log.warning("Dagster at %s has no task index on the DAG asset %s (airlift-dagster older than this "
                            "airlift-airflow): reading every asset node's tags (slow path)",
                            client.url, "/".join(dag_asset_path(instance_name, dag_id)))
        if paths is None:
            paths = client.asset_keys_with_tags(wanted, without=without)
        assets = client.assets_by_key(paths)
        missing = sorted({tuple(p) for p in paths} - {a.path for a in assets})
        if missing:
            raise DagsterApiError(
                f"Dagster at {client.url} has no asset(s) {['/'.join(m) for m in missing]} for {what}: "
                "fix the task's asset_keys or reload the code location"
            )
        return assets

    # -- launching --------------------------------------------------------------------------------

    def plan(
        self,
        groups: Mapping[tuple[str, str], Sequence[tuple[str, ...]]],
        *,
        identity: Mapping[str, str],
        try_number: int,
        max_tries: int | None,
    ) -> list[LaunchPlan]:
        """For each code location: the run to use, or ``launch`` (see the module docstring). Which runs
        stand for this try is :func:`airlift_protocol.run_counts_for_try`, from the runs' attempt tag."""
        existing = self.get_conn().runs_with_tags(identity)
        plans = []
        for (location, repository), paths in sorted(groups.items()):
            here = [r for r in existing if r.tags.get(DAGSTER_CODE_LOCATION_RUN_TAG) == location]
            mine = [r for r in here if _counts(r, try_number=try_number, max_tries=max_tries)]
            stale = [r for r in here if r.in_flight and r not in mine]
            same_try = [r for r in mine if _int(r.tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG), 0) == try_number]
            in_flight = [r for r in mine if r.in_flight]
            succeeded = [r for r in mine if r.status == "SUCCESS"]
            if same_try:
                plans.append(LaunchPlan(location, repository, paths, same_try[0], f"launched by this try ({same_try[0].status})",
                                        stale))
            elif in_flight:
                run = in_flight[0]
                plans.append(LaunchPlan(location, repository, paths, run,
                                        f"launched by try {run.tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG)}, still {run.status}", stale))
            elif succeeded:
                run = succeeded[0]
                plans.append(LaunchPlan(location, repository, paths, run,
                                        f"launched by try {run.tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG)}, already succeeded", stale))
            else:
                plans.append(LaunchPlan(location, repository, paths, stale=stale))
        return plans

    def launch(
        self,
        *,
        location: str,
        repository: str,
        asset_paths: Sequence[Sequence[str]],
        tags: Mapping[str, str],
        say: Callable[..., None] = log.warning,
        lookup_for: float = DEFAULT_LAUNCH_LOOKUP,
        asset_checks: Sequence[tuple[Sequence[str], str]] | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> str:
        """Launch one run, exactly once per ``tags``. The mutation is sent once; when its answer is lost
        or late (timeout, dropped connection, 5xx after the request left) the run is looked up by its
        tags for up to ``lookup_for`` seconds before it is sent again (a request that never left is sent
        again after the policy's backoff). Sending again is the policy's retry (:meth:`RetryPolicy.call`).
        If two runs then exist for the tags, the one returned is kept and the other terminated."""
        client = self.get_conn()
        lost: list[str] = []

        def attempt() -> str:
            if lost:
                found = self._find_launched(tags, lookup_for, say)
                if found is not None:
                    return found
                say("No Dagster run with this try's tags appeared within %gs; launching again", lookup_for)
            try:
                return client.launch_run(location=location, repository=repository, asset_paths=asset_paths, tags=tags,
                                         asset_checks=asset_checks, run_config=run_config)
            except DagsterLaunchUnknownError as e:
                if e.sent:
                    lost.append(str(e))
                    say("%s; looking the run up by its tags (up to %gs) before launching again", e, lookup_for)
                raise Retryable(str(e)) from e

        try:
            run_id = self.retry.call(attempt)
        except Retryable as e:
            found = self._find_launched(tags, lookup_for, say) if lost else None
            if found is None:
                raise DagsterUnreachableError(
                    f"could not launch a Dagster run at {client.graphql_url} after {e.attempts} attempt(s) ({e.problem}); "
                    "no run with this task try's tags exists"
                ) from e
            run_id = found
        if lost:  # the lost request may still create a run: checked now and on every poll while waiting
            self.unsettled.append((dict(tags), run_id))
            self.settle_duplicates(tags, keep=run_id, say=say)
        return run_id

    def _find_launched(self, tags: Mapping[str, str], lookup_for: float, say: Callable[..., None]) -> str | None:
        """The run Dagster created for ``tags`` (the oldest), looked for up to ``lookup_for`` seconds."""
        client, clock = self.get_conn(), self.retry.clock
        end = clock() + lookup_for
        while True:
            try:
                runs = client.runs_with_tags(tags)
            except DagsterUnreachableError:
                runs = []
            if runs:
                say("Dagster had created the run: %s (%s)", client.run_url(runs[-1].run_id), runs[-1].status)
                return runs[-1].run_id
            left = end - clock()
            if left <= 0:
                return None
            self.retry.sleep(min(LAUNCH_LOOKUP_INTERVAL, left))

    def settle_duplicates(self, tags: Mapping[str, str], *, keep: str, say: Callable[..., None] = log.warning) -> list[str]:
        """Keep ``keep`` as the one run for ``tags`` (one try, one code location): terminate every other
        run in flight carrying them, except Dagster's retries of ``keep``. Returns the runs terminated."""
        client = self.get_conn()
        runs = client.runs_with_tags(tags)
        kept_chain = next((_chain_root(r) for r in runs if r.run_id == keep), keep)
        others = [r for r in runs if _chain_root(r) != kept_chain and not r.finished]
        for run in others:
            problem = self.terminate([run.run_id]).get(run.run_id)
            say("Two Dagster runs exist for one task try: kept %s, %s %s: %s", client.run_url(keep),
                "terminated" if problem is None else f"could not terminate ({problem})", run.run_id,
                client.run_url(run.run_id))
        return [r.run_id for r in others]

    # -- waiting and stopping ---------------------------------------------------------------------

    def wait(
        self,
        run_ids: Sequence[str],
        *,
        poll_interval: float,
        timeout: float | None,
        grace: float = DEFAULT_UNREACHABLE_GRACE,
        say: Callable[..., None] = log.info,
        warn: Callable[..., None] = log.warning,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        started: Callable[[RunWaiter], None] | None = None,
    ) -> list[DagsterRunResult]:
        """Poll the runs until each ends, following Dagster's retries, riding out an unreachable Dagster
        for ``grace`` seconds, for at most ``timeout`` seconds (see :mod:`airlift_airflow.waiting`). A
        result whose wait stopped early keeps the last status seen and says why in ``error``. After a
        launch whose answer was lost, each poll also looks for a second run of that try (and terminates
        it, see :meth:`settle_duplicates`). ``started``
        gets the :class:`RunWaiter` (whose current runs ``on_kill`` terminates)."""
        client = self.get_conn()
        sleep = sleep or self.retry.sleep
        clock = clock or self.retry.clock
        waiter = RunWaiter(run_ids, grace=grace, deadline=None if timeout is None else clock() + timeout,
                           clock=clock, url=client.url, say=say, warn=warn)
        if started is not None:
            started(waiter)
        while True:
            try:
                for watch in waiter.pending():
                    waiter.seen(watch, client.run(watch.current))
                for tags, keep in self.unsettled:
                    self.settle_duplicates(tags, keep=keep, say=warn)
            except DagsterUnreachableError as e:
                waiter.unreachable(e)
            if waiter.done():
                return [client.result(run_id, status, error=error) for run_id, status, error in waiter.outcome()]
            sleep(poll_interval)

    async def await_runs(self, waiter: RunWaiter, *, poll_interval: float) -> list[tuple[str, str, str | None]]:
        """:meth:`wait` for the triggerer: the same steps with async requests; returns the waiter's outcome."""
        client = await self.aget_conn()
        while True:
            try:
                for watch in waiter.pending():
                    waiter.seen(watch, await client.arun(watch.current))
            except DagsterUnreachableError as e:
                waiter.unreachable(e)
            if waiter.done():
                return waiter.outcome()
            await self.retry.asleep(poll_interval)

    def terminate(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """Terminate the runs still in flight; run id → ``None`` (terminated) or why not. A run that
        Dagster cannot stop right now (still STARTING) is marked canceled: its run worker, when it
        starts, sees the run finished and does nothing."""
        client = self.get_conn()
        outcome: dict[str, str | None] = {}
        for run_id in run_ids:
            try:
                if client.run(run_id).finished:
                    continue
                problem = client.terminate_run(run_id)
                if problem is not None and not client.run(run_id).finished:
                    problem = client.terminate_run(run_id, force=True)
                outcome[run_id] = problem
            except DagsterApiError as e:
                outcome[run_id] = str(e)
        return outcome

    async def aterminate(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """:meth:`terminate` for the triggerer."""
        client = await self.aget_conn()
        outcome: dict[str, str | None] = {}
        for run_id in run_ids:
            try:
                if (await client.arun(run_id)).finished:
                    continue
                problem = await client.aterminate_run(run_id)
                if problem is not None and not (await client.arun(run_id)).finished:
                    problem = await client.aterminate_run(run_id, force=True)
                outcome[run_id] = problem
            except DagsterApiError as e:
                outcome[run_id] = str(e)
        return outcome

    def terminate_in_flight(self, tags: Mapping[str, str]) -> dict[str, str | None]:
        """Terminate every run in flight carrying ``tags`` (a launch whose answer never came)."""
        return self.terminate([r.run_id for r in self.get_conn().runs_with_tags(tags) if not r.finished])


def _chain_root(run: DagsterRun) -> str:
    """The first run of a run's Dagster retry chain (itself when it is no retry)."""
    return run.tags.get(ROOT_RUN_ID_TAG) or run.run_id

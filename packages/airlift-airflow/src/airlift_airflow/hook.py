"""``DagsterHook``: the Airflow connection to Dagster and every request ``DagsterOperator`` makes.

The launch rule (one Dagster run per task try and code location):

- every run carries the identity tags (Airflow instance, DAG, run, task, try number, map index) and
  its code location; together they are the launch's idempotency key;
- the launch mutation is sent once; a launch that timed out, lost its connection or got a 5xx is
  resolved by looking the run up by those tags (after a backoff) before it is sent again;
- for each code location, a try first looks at the runs of the current attempt (the tries since the
  task was last cleared, named by the attempt tag ``airlift/airflow_max_tries``; the rule is
  :func:`airlift_protocol.run_counts_for_try`): a run of its own try is used whatever its state; else
  a run of an earlier try still in flight (or failed with a Dagster retry coming) is re-attached to,
  and one that succeeded is reused; a failed or canceled one (or none) gets a new run. So a retry
  completes only the locations whose run is missing or failed. Dagster's own retries of a run copy its
  tags, so they belong to the same try;
- runs of tries before a clear are ignored: a cleared task launches new runs.
"""

from __future__ import annotations

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
from airlift_protocol import (
    AIRFLOW_TRY_NUMBER_RUN_TAG,
    DAG_ID_TAG,
    DAGSTER_CODE_LOCATION_RUN_TAG,
    TASK_ID_TAG,
    RetryPolicy,
    encode_tag_value,
    parse_dagster_run_tags,
    run_counts_for_try,
)
from airlift_protocol.tags import dag_asset_path

__all__ = ["DEFAULT_CONN_ID", "TOKEN_ENV", "URL_ENV", "DagsterHook", "LaunchPlan", "connection_url_and_token"]

DEFAULT_CONN_ID = "dagster_default"
URL_ENV = "AIRLIFT_DAGSTER_URL"
TOKEN_ENV = "AIRLIFT_DAGSTER_API_TOKEN"

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
    """What one task try does in one code location: ``launch`` a run, or use ``run`` (re-attach/reuse).

    >>> LaunchPlan("defs", "__repository__", [("a",)]).launch
    True
    """

    location: str
    repository: str
    paths: Sequence[tuple[str, ...]]
    run: DagsterRun | None = None
    reason: str = ""

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

    def get_conn(self) -> DagsterGraphQLClient:
        """The GraphQL client (one per hook, so one HTTP session)."""
        if self._client is None:
            url, token = self.url_and_token()
            self._client = DagsterGraphQLClient(url, api_token=token, timeout=self.timeout, retry=self.retry)
        return self._client

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
        no task tag); each must carry the task's tags. With ``asset_keys`` only those nodes are asked
        for. Otherwise, with ``instance_name``, the task -> asset index on the DAG asset
        ``[instance_name, "dag", dag_id]`` names the keys (two small requests, whatever the size of
        the deployment); without it, or when Dagster has no such DAG asset, every asset node's tags
        are read (the slow path, logged), as when the index does not list the task and
        ``scan_if_unindexed`` (assets of another code location may carry the task's tags).

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
        wrong = [a for a in assets if any(a.tags.get(k) != v for k, v in wanted.items()) or any(k in a.tags for k in without)]
        if wrong:
            raise DagsterApiError(
                f"the asset(s) {['/'.join(a.path) for a in wrong]} at {client.url} are not mapped to {what} "
                "(tags airlift/dag_id and airlift/task_id): map them with dag_defs/task_defs"
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
            mine = [r for r in existing if r.tags.get(DAGSTER_CODE_LOCATION_RUN_TAG) == location
                    and _counts(r, try_number=try_number, max_tries=max_tries)]
            same_try = [r for r in mine if _int(r.tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG), 0) == try_number]
            in_flight = [r for r in mine if r.in_flight]
            succeeded = [r for r in mine if r.status == "SUCCESS"]
            if same_try:
                plans.append(LaunchPlan(location, repository, paths, same_try[0], f"launched by this try ({same_try[0].status})"))
            elif in_flight:
                run = in_flight[0]
                plans.append(LaunchPlan(location, repository, paths, run,
                                        f"launched by try {run.tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG)}, still {run.status}"))
            elif succeeded:
                run = succeeded[0]
                plans.append(LaunchPlan(location, repository, paths, run,
                                        f"launched by try {run.tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG)}, already succeeded"))
            else:
                plans.append(LaunchPlan(location, repository, paths))
        return plans

    def launch(
        self,
        *,
        location: str,
        repository: str,
        asset_paths: Sequence[Sequence[str]],
        tags: Mapping[str, str],
        say: Callable[..., None] = log.warning,
    ) -> str:
        """Launch one run, exactly once: an ambiguous failure is resolved by looking the run up by
        ``tags`` (after the retry policy's backoff) before the mutation is sent again."""
        client = self.get_conn()
        start = self.retry.start()
        attempt = 0
        while True:
            attempt += 1
            try:
                return client.launch_run(location=location, repository=repository, asset_paths=asset_paths, tags=tags)
            except DagsterLaunchUnknownError as e:
                problem = str(e)
            delay = self.retry.delay_for(attempt, start=start)
            say("%s; looking the run up by its tags before launching again", problem)
            found = self._lookup(tags)
            if found is None and delay is not None:
                self.retry.sleep(delay)
                found = self._lookup(tags)
            if found is not None:
                say("Dagster had created the run: %s (%s)", client.run_url(found.run_id), found.status)
                return found.run_id
            if delay is None:
                raise DagsterUnreachableError(
                    f"could not launch a Dagster run at {client.graphql_url} after {attempt} attempt(s) ({problem}); "
                    "no run with this task try's tags exists"
                )

    def _lookup(self, tags: Mapping[str, str]) -> DagsterRun | None:
        runs = self.get_conn().runs_with_tags(tags)
        return runs[0] if runs else None

    # -- waiting and stopping ---------------------------------------------------------------------

    def wait(
        self,
        run_ids: Sequence[str],
        *,
        poll_interval: float,
        timeout: float | None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> list[DagsterRunResult]:
        """Poll the runs until all end (or ``timeout`` seconds pass: a result then keeps the in-flight
        status and says so in ``error``)."""
        client = self.get_conn()
        sleep = sleep or self.retry.sleep
        clock = clock or self.retry.clock
        deadline = None if timeout is None else clock() + timeout
        status: dict[str, str] = {}
        while True:
            for run_id in run_ids:
                if status.get(run_id) not in ("SUCCESS", "FAILURE", "CANCELED"):
                    status[run_id] = client.run_status(run_id)
            pending = [r for r in run_ids if status[r] not in ("SUCCESS", "FAILURE", "CANCELED")]
            if not pending or (deadline is not None and clock() >= deadline):
                late = f"still in flight after {timeout:g}s (run_timeout); the Dagster run goes on" if pending else None
                return [client.result(r, status[r], error=late if r in pending else None) for r in run_ids]
            sleep(poll_interval)

    def terminate(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """Terminate the runs still in flight; run id → ``None`` (terminated) or why not. A run that
        Dagster cannot stop right now (still STARTING) is marked canceled: its run worker, when it
        starts, sees the run finished and does nothing."""
        client = self.get_conn()
        outcome: dict[str, str | None] = {}
        for run_id in run_ids:
            try:
                if client.run_status(run_id) in ("SUCCESS", "FAILURE", "CANCELED"):
                    continue
                problem = client.terminate_run(run_id)
                if problem is not None and client.run_status(run_id) not in ("SUCCESS", "FAILURE", "CANCELED"):
                    problem = client.terminate_run(run_id, force=True)
                outcome[run_id] = problem
            except DagsterApiError as e:
                outcome[run_id] = str(e)
        return outcome

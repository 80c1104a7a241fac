"""``DagsterOperator``: runs an Airflow task's assets as one Dagster run and mirrors its outcome."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from airlift_airflow.dagster_api import DagsterGraphQLClient, DagsterRun
from airlift_airflow.errors import DagsterApiError, DagsterRunFailedError
from airlift_airflow.version_compat import BaseHook, BaseOperator, connection_not_found_errors
from airlift_protocol import AIRFLOW_MAP_INDEX_RUN_TAG, AIRFLOW_TRY_NUMBER_RUN_TAG, dagster_run_tags

__all__ = ["DEFAULT_CONN_ID", "TOKEN_ENV", "URL_ENV", "DagsterOperator"]

DEFAULT_CONN_ID = "dagster_default"
URL_ENV = "AIRLIFT_DAGSTER_URL"
TOKEN_ENV = "AIRLIFT_DAGSTER_API_TOKEN"


def _connection_url_and_token(conn_id: str) -> tuple[str | None, str | None]:
    """URL and token of an Airflow connection (``None, None`` when the connection does not exist)."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except connection_not_found_errors():
        return None, None
    extra: Mapping[str, Any]
    try:
        extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    except ValueError:
        extra = {}
    url = extra.get("url")
    if not url and conn.host:
        host = str(conn.host).rstrip("/")
        if "://" not in host:
            scheme = extra.get("scheme") or ("https" if conn.conn_type == "https" else "http")
            host = f"{scheme}://{host}"
        url = host + (f":{conn.port}" if conn.port else "") + (f"/{conn.schema.strip('/')}" if conn.schema else "")
    token = conn.password or extra.get("api_token")
    return url, token


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


class DagsterOperator(BaseOperator):
    """Materializes, in Dagster, the assets tagged with this task's DAG and task id.

    ``mark_as_dagster_migrating`` puts it in place of every ``migrated: true`` task; you rarely
    create one yourself. At execute it:

    1. asks Dagster's GraphQL API for the asset nodes tagged ``airlift/dag_id`` + ``airlift/task_id``
       (no such asset is an error naming the task and the Dagster URL);
    2. launches one run of exactly those assets per code location on the implicit ``__ASSET_JOB``,
       tagged with the Airflow DAG, task, run id, try number (and map index), and logs its link
       ``<dagster_url>/runs/<run_id>``;
    3. polls the run until it ends and fails the Airflow task, with the run link and Dagster's error,
       when it fails or is canceled. It returns (and pushes as XCom) the Dagster run ids.

    Retries are idempotent: a try first looks for Dagster runs of the same Airflow DAG/task/run. It
    re-attaches to one still in flight (whatever try launched it), and reuses one that already
    succeeded when an earlier try of the current attempt launched it (a worker died, the run went
    on). After a user clears the task, the runs of earlier attempts are not reused: a cleared task
    materializes again. Failed and canceled runs are never reused.

    The Dagster URL and optional Dagster+ API token come from the Airflow connection
    ``dagster_conn_id`` (default ``dagster_default``: host, port and schema, or extra ``url``;
    password or extra ``api_token``), else from ``AIRLIFT_DAGSTER_URL`` / ``AIRLIFT_DAGSTER_API_TOKEN``.
    The token is sent as ``Dagster-Cloud-Api-Token`` and never logged.

    Subclass it to customise, e.g. override :meth:`get_dagster_client`, and pass the subclass as
    ``mark_as_dagster_migrating(..., dagster_operator_class=MyOperator)``.

    >>> op = DagsterOperator(task_id="load_raw", poll_interval=5.0)  # doctest: +SKIP
    >>> # AIRFLOW_CONN_DAGSTER_DEFAULT='http://dagster-webserver:3000' in the Airflow environment
    """

    ui_color = "#4F43DD"
    ui_fgcolor = "#FFFFFF"

    def __init__(
        self,
        *,
        dagster_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 2.0,
        run_timeout: float | None = None,
        request_timeout: float = 30.0,
        request_attempts: int = 5,
        request_backoff: float = 1.0,
        airflow_instance_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dagster_conn_id = dagster_conn_id
        self.poll_interval = poll_interval
        self.run_timeout = run_timeout
        self.request_timeout = request_timeout
        self.request_attempts = request_attempts
        self.request_backoff = request_backoff
        self.airflow_instance_name = airflow_instance_name

    def get_dagster_client(self) -> DagsterGraphQLClient:
        """The GraphQL client for this task's Dagster (from the connection, else the env vars)."""
        url, token = _connection_url_and_token(self.dagster_conn_id)
        url = url or os.environ.get(URL_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        if not url:
            raise DagsterApiError(
                f"no Dagster URL for task {self.task_id!r}: create the Airflow connection {self.dagster_conn_id!r} "
                f"(e.g. AIRFLOW_CONN_{self.dagster_conn_id.upper()}='http://dagster-host:3000') or set {URL_ENV}"
            )
        return DagsterGraphQLClient(
            url,
            api_token=token,
            timeout=self.request_timeout,
            max_attempts=self.request_attempts,
            backoff=self.request_backoff,
        )

    def execute(self, context: Any) -> list[str]:
        ti = context["ti"]
        dag_id, task_id, run_id = ti.dag_id, ti.task_id, context["run_id"]
        try_number = _int(getattr(ti, "try_number", None), 1)
        map_index = _int(getattr(ti, "map_index", None), -1)
        # The first try of the current attempt: Airflow sets max_tries = try_number + retries when a
        # task is cleared, so runs launched before a clear have smaller try numbers.
        max_tries = getattr(ti, "max_tries", None)
        first_try = try_number if max_tries is None else _int(max_tries, 0) - _int(self.retries, 0) + 1
        client = self.get_dagster_client()
        run_tags = dagster_run_tags(
            dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, instance_name=self.airflow_instance_name
        )
        run_ids = self._existing_runs(client, run_tags, map_index=map_index, first_try=first_try)
        if not run_ids:
            run_ids = self._launch(client, dag_id=dag_id, task_id=task_id, tags={
                **run_tags, AIRFLOW_TRY_NUMBER_RUN_TAG: str(try_number)
            })
        failures = []
        for dagster_run_id in run_ids:
            result = client.wait_for_run(dagster_run_id, poll_interval=self.poll_interval, timeout=self.run_timeout)
            if result.status == "SUCCESS":
                self.log.info("Dagster run %s succeeded: %s", dagster_run_id, result.url)
            else:
                failures.append(f"Dagster run {result.status}: {result.url}\n{result.error or ''}".strip())
                self.log.error("Dagster run %s ended %s: %s", dagster_run_id, result.status, result.url)
        if failures:
            raise DagsterRunFailedError(f"the Dagster run of Airflow task {dag_id}.{task_id} did not succeed:\n" + "\n".join(failures))
        return run_ids

    def _launch(self, client: DagsterGraphQLClient, *, dag_id: str, task_id: str, tags: Mapping[str, str]) -> list[str]:
        assets = client.assets_for_task(dag_id=dag_id, task_id=task_id)
        if not assets:
            raise DagsterApiError(
                f"no Dagster assets are tagged for Airflow task {dag_id}.{task_id} at {client.url}: tag its assets "
                f"(e.g. task_defs / tags airlift/dag_id and airlift/task_id) and reload the code location, "
                "or set migrated: false"
            )
        not_executable = [a for a in assets if not a.executable]
        if not_executable:
            names = ", ".join("/".join(a.path) for a in not_executable)
            raise DagsterApiError(
                f"the Dagster assets of Airflow task {dag_id}.{task_id} at {client.url} are not executable ({names}): "
                "replace the AssetSpecs with asset definitions before migrating the task"
            )
        by_location: dict[tuple[str, str], list[tuple[str, ...]]] = defaultdict(list)
        for asset in assets:
            by_location[(asset.location, asset.repository)].append(asset.path)
        run_ids = []
        for (location, repository), paths in sorted(by_location.items()):
            new_run = client.launch_run(location=location, repository=repository, asset_paths=paths, tags=tags)
            self.log.info(
                "Launched Dagster run %s for %d asset(s) of %s.%s in code location %s: %s",
                new_run, len(paths), dag_id, task_id, location, client.run_url(new_run),
            )
            run_ids.append(new_run)
        return run_ids

    def _existing_runs(
        self, client: DagsterGraphQLClient, tags: Mapping[str, str], *, map_index: int, first_try: int
    ) -> list[str]:
        """Runs of this Airflow task run to re-attach to instead of launching duplicates.

        Only the runs of the latest try that launched any count (one run per code location): all of
        them when one is still in flight, or when all succeeded and that try belongs to the current
        attempt; otherwise none (a new run is launched).
        """
        runs = [r for r in client.runs_with_tags(tags) if r.tags.get(AIRFLOW_MAP_INDEX_RUN_TAG, "-1") == str(map_index)]
        if not runs:
            return []
        latest_try = max(_int(_try(r), 0) for r in runs)
        latest = [r for r in runs if _int(_try(r), 0) == latest_try]
        described = ", ".join(f"{client.run_url(r.run_id)} ({r.status})" for r in latest)
        if any(not r.finished for r in latest):
            self.log.info("Re-attaching to the Dagster run(s) launched by try %d, still in flight: %s", latest_try, described)
            return [r.run_id for r in latest]
        if latest_try >= first_try and all(r.status == "SUCCESS" for r in latest):
            self.log.info(
                "Try %d of this attempt already ran the task in Dagster successfully; not launching another: %s",
                latest_try, described,
            )
            return [r.run_id for r in latest]
        return []


def _try(run: DagsterRun) -> str:
    return run.tags.get(AIRFLOW_TRY_NUMBER_RUN_TAG, "0")

"""``DagsterOperator``: runs an Airflow task's assets as one Dagster run and mirrors its outcome."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

from airlift_airflow.dagster_api import IN_FLIGHT_STATUSES, DagsterApiError, DagsterGraphQLClient
from airlift_airflow.version_compat import BaseHook, BaseOperator, connection_not_found_errors
from airlift_protocol import AIRFLOW_TRY_NUMBER_RUN_TAG, dagster_run_tags

__all__ = ["DEFAULT_CONN_ID", "DagsterOperator", "DagsterRunFailedError"]

DEFAULT_CONN_ID = "dagster_default"
URL_ENV = "AIRLIFT_DAGSTER_URL"
TOKEN_ENV = "AIRLIFT_DAGSTER_API_TOKEN"


class DagsterRunFailedError(Exception):
    """The Dagster run of a migrated task failed or was canceled (message has the run link)."""


def _connection_url_and_token(conn_id: str) -> tuple[str | None, str | None]:
    try:
        conn = BaseHook.get_connection(conn_id)
    except connection_not_found_errors():
        return None, None
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    url = extra.get("url")
    if not url and conn.host:
        host = conn.host
        if "://" not in host:
            scheme = extra.get("scheme") or ("https" if conn.conn_type == "https" else "http")
            host = f"{scheme}://{host}"
        url = host + (f":{conn.port}" if conn.port else "") + (f"/{conn.schema.strip('/')}" if conn.schema else "")
    token = conn.password or extra.get("api_token")
    return url, token


class DagsterOperator(BaseOperator):
    """Materializes, in Dagster, the assets tagged with this task's DAG and task id.

    At execute it asks Dagster's GraphQL API for the assets tagged ``airlift/dag_id`` and
    ``airlift/task_id``, launches one run of exactly those assets per code location (tagged with the
    Airflow DAG, task, run id and try number), logs the run link, waits, and fails the task with the
    link and error if the run fails or is canceled. A retried task re-attaches to a run of the same
    Airflow task run that is still in flight instead of launching another.

    The Dagster URL (and optional Dagster+ API token) come from the Airflow connection
    ``dagster_conn_id`` (default ``dagster_default``: host/port/schema or extra ``url``; password or
    extra ``api_token``), else from ``AIRLIFT_DAGSTER_URL`` / ``AIRLIFT_DAGSTER_API_TOKEN``.

    ``mark_as_dagster_migrating`` puts it in place of migrated tasks; subclass it to customize, e.g.
    override :meth:`get_dagster_client`.
    """

    ui_color = "#4F43DD"
    ui_fgcolor = "#FFFFFF"

    def __init__(
        self,
        *,
        dagster_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 2.0,
        run_timeout: float | None = None,
        airflow_instance_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dagster_conn_id = dagster_conn_id
        self.poll_interval = poll_interval
        self.run_timeout = run_timeout
        self.airflow_instance_name = airflow_instance_name

    def get_dagster_client(self) -> DagsterGraphQLClient:
        url, token = _connection_url_and_token(self.dagster_conn_id)
        url = url or os.environ.get(URL_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        if not url:
            raise DagsterApiError(
                f"no Dagster URL for task {self.task_id!r}: create the Airflow connection {self.dagster_conn_id!r} "
                f"(e.g. AIRFLOW_CONN_{self.dagster_conn_id.upper()}='http://dagster-host:3000') or set {URL_ENV}"
            )
        return DagsterGraphQLClient(url, api_token=token)

    def execute(self, context: Any) -> list[str]:
        ti = context["ti"]
        dag_id, task_id, run_id = ti.dag_id, ti.task_id, context["run_id"]
        try_number = int(getattr(ti, "try_number", 1) or 1)
        map_index = int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", -1) is not None else -1)
        client = self.get_dagster_client()
        base_tags = dagster_run_tags(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index,
                                     instance_name=self.airflow_instance_name)
        run_ids = self._reattach(client, base_tags)
        if run_ids:
            self.log.info("Re-attaching to Dagster run(s) already in flight for this task: %s",
                          ", ".join(client.run_url(r) for r in run_ids))
        else:
            assets = client.assets_for_task(dag_id, task_id)
            if not assets:
                raise DagsterApiError(
                    f"no Dagster assets are tagged for Airflow task {dag_id}.{task_id} at {client.url}: give them "
                    "to build_defs_from_airflow_instance with dag_defs/task_defs, or set migrated: false"
                )
            not_executable = [a for a in assets if not a.executable]
            if not_executable:
                names = ", ".join("/".join(a.path) for a in not_executable)
                raise DagsterApiError(
                    f"the Dagster assets of Airflow task {dag_id}.{task_id} are not executable ({names}): replace the "
                    "AssetSpecs with asset definitions before migrating the task"
                )
            by_location: dict[tuple[str, str], list[tuple[str, ...]]] = defaultdict(list)
            for asset in assets:
                by_location[(asset.location, asset.repository)].append(asset.path)
            tags = {**base_tags, AIRFLOW_TRY_NUMBER_RUN_TAG: str(try_number)}
            run_ids = []
            for (location, repository), paths in sorted(by_location.items()):
                new_run = client.launch_run(location=location, repository=repository, asset_paths=paths, tags=tags)
                self.log.info("Launched Dagster run %s for %d asset(s) of %s.%s: %s",
                              new_run, len(paths), dag_id, task_id, client.run_url(new_run))
                run_ids.append(new_run)
        failures = []
        for dagster_run_id in run_ids:
            result = client.wait_for_run(dagster_run_id, poll_interval=self.poll_interval, timeout=self.run_timeout)
            if result.status == "SUCCESS":
                self.log.info("Dagster run %s succeeded: %s", dagster_run_id, result.url)
            else:
                failures.append(f"Dagster run {result.status}: {result.url}\n{result.error or ''}".strip())
        if failures:
            raise DagsterRunFailedError("\n".join(failures))
        return run_ids

    def _reattach(self, client: DagsterGraphQLClient, tags: dict[str, str]) -> list[str]:
        return [run_id for run_id, status, _ in client.runs_with_tags(tags) if status in IN_FLIGHT_STATUSES]

"""Links into the Airflow UI, for Airflow 2 (grid view) and Airflow 3 (React UI) alike.

Pure string building, shared by everything that links to Airflow: the Dagster side (through
``airlift_client``) and the push listener inside Airflow, so both put the same links in the events
they report.

>>> links = ui_links_for(ApiVersion.V2, "http://localhost:8080")
>>> links.run_url("my_dag", "manual__1")
'http://localhost:8080/dags/my_dag/runs/manual__1'
>>> ui_links_for(ApiVersion.V1, "http://localhost:8080").dag_url("my_dag")
'http://localhost:8080/dags/my_dag/grid'
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from airlift_protocol.models import ApiVersion

__all__ = ["AirflowUiLinks", "ui_links_for"]


def _q(value: str) -> str:
    return quote(value, safe="")


class AirflowUiLinks:
    """UI links of one webserver for one API generation (``ApiVersion.V1`` is Airflow 2,
    ``ApiVersion.V2`` Airflow 3). Ids are URL-quoted.

    >>> AirflowUiLinks(ApiVersion.V1, "http://af:8080/").log_url("d", "r", "t", try_number=2)
    'http://af:8080/dags/d/grid?dag_run_id=r&task_id=t&tab=logs&try_number=2'
    """

    def __init__(self, api: ApiVersion, webserver_url: str) -> None:
        self.api = api
        self.webserver_url = webserver_url.rstrip("/")

    def __repr__(self) -> str:
        return f"AirflowUiLinks(api={self.api.value!r}, webserver_url={self.webserver_url!r})"

    def _grid(self, dag_id: str, **params: Any) -> str:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return f"{self.webserver_url}/dags/{_q(dag_id)}/grid" + (f"?{query}" if query else "")

    def dag_url(self, dag_id: str) -> str:
        """Link to a DAG."""
        if self.api is ApiVersion.V1:
            return self._grid(dag_id)
        return f"{self.webserver_url}/dags/{_q(dag_id)}"

    def run_url(self, dag_id: str, run_id: str) -> str:
        """Link to a DAG run."""
        if self.api is ApiVersion.V1:
            return self._grid(dag_id, dag_run_id=run_id)
        return f"{self.dag_url(dag_id)}/runs/{_q(run_id)}"

    def task_instance_url(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> str:
        """Link to a task instance (``map_index`` for one mapped instance)."""
        mapped = map_index if map_index >= 0 else None
        if self.api is ApiVersion.V1:
            return self._grid(dag_id, dag_run_id=run_id, task_id=task_id, map_index=mapped)
        url = f"{self.run_url(dag_id, run_id)}/tasks/{_q(task_id)}"
        return f"{url}/mapped/{map_index}" if mapped is not None else url

    def log_url(self, dag_id: str, run_id: str, task_id: str, *, try_number: int, map_index: int = -1) -> str:
        """Link to the log of one try of a task instance."""
        if self.api is ApiVersion.V1:
            return self._grid(dag_id, dag_run_id=run_id, task_id=task_id, map_index=map_index if map_index >= 0 else None,
                              tab="logs", try_number=try_number)
        return f"{self.task_instance_url(dag_id, run_id, task_id, map_index=map_index)}?try_number={try_number}"


def ui_links_for(api: ApiVersion, webserver_url: str) -> AirflowUiLinks:
    """The UI links of ``webserver_url`` for ``api``.

    >>> ui_links_for(ApiVersion.V2, "http://af:8080").task_instance_url("d", "r", "t", map_index=3)
    'http://af:8080/dags/d/runs/r/tasks/t/mapped/3'
    """
    return AirflowUiLinks(api, webserver_url)

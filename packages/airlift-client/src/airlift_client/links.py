"""Links into the Airflow UI, for Airflow 2 (grid view) and Airflow 3 (React UI) alike.

>>> from airlift_protocol import ApiVersion
>>> links = ui_links_for(ApiVersion.V2, "http://localhost:8080")
>>> links.run_url("my_dag", "manual__1")
'http://localhost:8080/dags/my_dag/runs/manual__1'
>>> ui_links_for(ApiVersion.V1, "http://localhost:8080").dag_url("my_dag")
'http://localhost:8080/dags/my_dag/grid'
"""

from __future__ import annotations

from airlift_client._generations import rest_for
from airlift_protocol import ApiVersion

__all__ = ["AirflowUiLinks", "ui_links_for"]


class AirflowUiLinks:
    """UI links of one webserver for one API generation (``ApiVersion.V1`` is Airflow 2,
    ``ApiVersion.V2`` Airflow 3). Ids are URL-quoted."""

    def __init__(self, api: ApiVersion, webserver_url: str) -> None:
        self.api = api
        self.webserver_url = webserver_url.rstrip("/")
        self._rest = rest_for(api, self.webserver_url)

    def __repr__(self) -> str:
        return f"AirflowUiLinks(api={self.api.value!r}, webserver_url={self.webserver_url!r})"

    def dag_url(self, dag_id: str) -> str:
        """Link to a DAG."""
        return self._rest.dag_url(dag_id)

    def run_url(self, dag_id: str, run_id: str) -> str:
        """Link to a DAG run."""
        return self._rest.run_url(dag_id, run_id)

    def task_instance_url(self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1) -> str:
        """Link to a task instance (``map_index`` for one mapped instance)."""
        return self._rest.task_instance_url(dag_id, run_id, task_id, map_index=map_index)

    def log_url(self, dag_id: str, run_id: str, task_id: str, *, try_number: int, map_index: int = -1) -> str:
        """Link to the log of one try of a task instance."""
        return self._rest.log_url(dag_id, run_id, task_id, try_number=try_number, map_index=map_index)


def ui_links_for(api: ApiVersion, webserver_url: str) -> AirflowUiLinks:
    """The UI links of ``webserver_url`` for ``api``."""
    return AirflowUiLinks(api, webserver_url)

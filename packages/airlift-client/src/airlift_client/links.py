"""Links into the Airflow UI, for Airflow 2 (grid view) and Airflow 3 (React UI) alike (defined in
:mod:`airlift_protocol.links`, shared with the push listener inside Airflow).

>>> from airlift_protocol import ApiVersion
>>> links = ui_links_for(ApiVersion.V2, "http://localhost:8080")
>>> links.run_url("my_dag", "manual__1")
'http://localhost:8080/dags/my_dag/runs/manual__1'
>>> ui_links_for(ApiVersion.V1, "http://localhost:8080").dag_url("my_dag")
'http://localhost:8080/dags/my_dag/grid'
"""

from __future__ import annotations

from airlift_protocol.links import AirflowUiLinks, ui_links_for

__all__ = ["AirflowUiLinks", "ui_links_for"]

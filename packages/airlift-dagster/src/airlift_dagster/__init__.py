"""airlift-dagster: peer and observe an Airflow instance from a Dagster code location.

>>> from dagster import AssetSpec
>>> from airlift_dagster import AirflowInstance, BasicAuthBackend, build_defs_from_airflow_instance, dag_defs, task_defs
>>> airflow_instance = AirflowInstance(
...     auth_backend=BasicAuthBackend(webserver_url="http://localhost:8080", username="admin", password="admin"),
...     name="airflow_instance_one",
... )
>>> defs = build_defs_from_airflow_instance(  # doctest: +SKIP
...     airflow_instance=airflow_instance,
...     defs=dag_defs("rebuild_customers_list",
...         task_defs("load_raw_customers", AssetSpec(key=["raw_data", "raw_customers"]))),
... )
"""

from __future__ import annotations

from typing import Any

from airlift_client import AirflowInstance, BasicAuthBackend, TokenAuthBackend
from airlift_dagster.component import AirflowInstanceComponent
from airlift_dagster.decommission import load_decommissioned_defs
from airlift_dagster.defs import (
    DAG_RUN_CHECK_NAME,
    PARTITION_CHECK_NAME,
    REFRESH_ENV_VAR,
    TASK_RUN_CHECK_NAME,
    build_defs_from_airflow_instance,
    dag_asset_key,
    load_airflow_state,
)
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.mapping import built_by_tasks, dag_defs, task_defs
from airlift_dagster.sensor import AirliftSensorCursor, SensorSettings, TickOutcome, evaluate_tick
from airlift_dagster.state import AirflowInstanceState, DagFilter, fetch_airflow_state
from airlift_dagster.transform import AirflowTickView, EventTransformer
from airlift_dagster.translator import (
    AirflowDagProps,
    AirflowDatasetProps,
    AirflowTranslator,
    DatasetFilter,
    dataset_asset_key,
)
from airlift_dagster.trigger import ExecutableDagSettings
from airlift_dagster.version import __version__

__all__ = [
    "DAG_RUN_CHECK_NAME",
    "PARTITION_CHECK_NAME",
    "REFRESH_ENV_VAR",
    "TASK_RUN_CHECK_NAME",
    "AirflowDagProps",
    "AirflowDatasetProps",
    "AirflowInstance",
    "AirflowInstanceComponent",
    "AirflowInstanceState",
    "AirflowTickView",
    "AirflowTranslator",
    "AirliftDagsterError",
    "AirliftSensorCursor",
    "BasicAuthBackend",
    "DagFilter",
    "DatasetFilter",
    "EventTransformer",
    "ExecutableDagSettings",
    "MwaaSessionAuthBackend",
    "SensorSettings",
    "TickOutcome",
    "TokenAuthBackend",
    "__version__",
    "build_defs_from_airflow_instance",
    "built_by_tasks",
    "dag_asset_key",
    "dag_defs",
    "dataset_asset_key",
    "evaluate_tick",
    "fetch_airflow_state",
    "load_airflow_state",
    "load_decommissioned_defs",
    "task_defs",
]


def __getattr__(name: str) -> Any:
    if name == "MwaaSessionAuthBackend":
        from airlift_client.mwaa import MwaaSessionAuthBackend

        return MwaaSessionAuthBackend
    raise AttributeError(f"module 'airlift_dagster' has no attribute {name!r}")

"""Definitions file used by the integration test with `dagster definitions validate`."""

import os

from dagster import AssetSpec

from airlift_dagster import (
    AirflowInstance,
    BasicAuthBackend,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)

airflow_instance = AirflowInstance(
    auth_backend=BasicAuthBackend(webserver_url=os.environ["AIRLIFT_TEST_AIRFLOW_URL"], username="admin", password="admin"),
    name="airflow_instance_one",
)

defs = build_defs_from_airflow_instance(
    airflow_instance=airflow_instance,
    defs=dag_defs("team.sales-daily_v2", task_defs("extract", AssetSpec(key=["sales", "raw_orders"]))),
)

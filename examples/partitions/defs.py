"""A time-partitioned asset built by an Airflow task: each Airflow run materializes the day it covers."""

import os

from dagster import AssetSpec, DailyPartitionsDefinition

from airlift_dagster import (
    AirflowInstance,
    BasicAuthBackend,
    DagFilter,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)

airflow_instance = AirflowInstance(
    auth_backend=BasicAuthBackend(
        webserver_url=os.environ.get("EXAMPLE_AIRFLOW_URL", "http://127.0.0.1:8080"),
        username=os.environ.get("EXAMPLE_AIRFLOW_USER", "admin"),
        password=os.environ.get("EXAMPLE_AIRFLOW_PASSWORD", "admin"),
    ),
    name="airflow_instance_one",
)

defs = build_defs_from_airflow_instance(
    airflow_instance=airflow_instance,
    defs=dag_defs(
        "daily_sales",
        task_defs("build_day", AssetSpec("daily_sales", partitions_def=DailyPartitionsDefinition(start_date="2024-01-01"))),
    ),
    dag_filter=DagFilter(ids=("daily_sales",)),
)

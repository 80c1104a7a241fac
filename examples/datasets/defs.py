"""Airflow datasets / assets as Dagster assets: each dataset event Airflow records is a materialization."""

import os

from dagster import AssetSpec

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
    defs=dag_defs("publish_orders", task_defs("write_orders", AssetSpec("orders_raw"))),
    dag_filter=DagFilter(ids=("publish_orders", "build_orders_report")),
    # every dataset these DAGs produce or consume; DatasetFilter(uri_pattern=..., dag_tags=...) narrows it
    datasets=True,
)

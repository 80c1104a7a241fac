"""Each Airflow run of nightly_export as a Dagster run: in the run list, the timeline and the job's page."""

import os

from dagster import AssetSpec

from airlift_dagster import (
    AirflowInstance,
    BasicAuthBackend,
    DagFilter,
    SensorSettings,
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
    defs=dag_defs("nightly_export", task_defs("export", AssetSpec("nightly_export_file"))),
    dag_filter=DagFilter(ids=("nightly_export",)),
    sensor_settings=SensorSettings(mirror_runs=True),
)

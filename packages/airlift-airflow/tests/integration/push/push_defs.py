"""Dagster side of the push tests: the Airlift definitions of the test Airflow (sensor stopped at
start, ticking every 5 s once started, settle 9.5 s: push learns it and stops 2 s before); task c is
migrated and runs here."""

import os
from datetime import timedelta

import dagster as dg

from airlift_dagster import (
    AirflowInstance,
    BasicAuthBackend,
    SensorSettings,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)


@dg.asset(key=["push", "c"])
def push_c() -> None:
    pass


defs = build_defs_from_airflow_instance(
    airflow_instance=AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=os.environ["AIRLIFT_PUSH_AIRFLOW_URL"], username="admin", password="admin"),
        name="push_e2e",
    ),
    defs=dg.Definitions.merge(
        dag_defs(
            "push_dag",
            task_defs("a", dg.AssetSpec(["push", "a"])),
            task_defs("b", dg.AssetSpec(["push", "b"], deps=[["push", "a"]])),
            task_defs("c", push_c),
        ),
        dag_defs("push_plain", task_defs("x", dg.AssetSpec(["push", "x"]))),
    ),
    sensor_minimum_interval_seconds=5,
    sensor_settings=SensorSettings(settle=timedelta(seconds=9.5)),
    default_sensor_status=dg.DefaultSensorStatus.STOPPED,
    dag_selector_fn=lambda dag: dag.dag_id in ("push_dag", "push_plain"),
)

"""Dagster side of the chaos suite: the Airlift definitions of the suite's Airflow under an instance
name that nothing on the Airflow side configures, the assets of the migrated tasks, a sensor that
reads at most 10 rows per tick. chaos_late is mapped only while CHAOS_STATE/map_late exists.
"""

import os
import time
from pathlib import Path

import dagster as dg

from airlift_dagster import (
    AirflowInstance,
    BasicAuthBackend,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)

INSTANCE = "chaos_prod"
STATE = Path(os.environ["CHAOS_STATE"])


@dg.asset(key=["chaos", "built"])
def built() -> None:
    time.sleep(2)


@dg.asset(key=["chaos", "named"])
def named() -> None:
    pass


@dg.asset(key=["chaos", "flaky"])
def flaky() -> None:
    time.sleep(5)  # still running when a lost first try's retry looks for it


mapped = [
    dag_defs(
        "chaos_main",
        task_defs("extract", dg.AssetSpec(["chaos", "raw"])),
        task_defs("fan", dg.AssetSpec(["chaos", "fanned"], deps=[["chaos", "raw"]])),
        task_defs("migrated", built),
        task_defs("flaky", flaky),
        task_defs("load", dg.AssetSpec(["chaos", "report"], deps=[["chaos", "fanned"]])),
    ),
    dag_defs("chaos_named", task_defs("named_task", named)),
]
if (STATE / "map_late").exists():
    mapped.append(dag_defs("chaos_late", task_defs("late_task", dg.AssetSpec(["chaos", "late"]))))

defs = build_defs_from_airflow_instance(
    airflow_instance=AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=os.environ["CHAOS_AIRFLOW_URL"], username="admin", password="admin"),
        name=INSTANCE,
    ),
    # one process per run (the default starts one more per step): the migrated tasks finish sooner
    defs=dg.Definitions.merge(*mapped, dg.Definitions(executor=dg.in_process_executor)),
    sensor_minimum_interval_seconds=3,
    max_rows_per_tick=10,
    dag_selector_fn=lambda dag: dag.dag_id.startswith("chaos_"),
)

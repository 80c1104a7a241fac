"""Dagster side of the chaos suite: the Airlift definitions of the suite's Airflow under an instance
name that nothing on the Airflow side configures, the assets of the migrated tasks, a sensor that
reads at most 10 rows per tick, and an asset ``hold`` that nothing maps (a run of it fills a slot of a
limited run queue). chaos_late is mapped only while CHAOS_STATE/map_late exists.

With CHAOS_STORED_STATE=1 (the production-shaped deployment) the Airflow state is read from Airflow once and
stored in CHAOS_STATE/airflow_state.json; every later load (a restarted code server) builds from that file
with no Airflow request, as Dagster's state-backed definitions do.
"""

import os
import time
from pathlib import Path

import dagster as dg

from airlift_dagster import (
    AirflowInstance,
    AirflowInstanceState,
    BasicAuthBackend,
    build_defs_from_airflow_instance,
    dag_defs,
    fetch_airflow_state,
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


@dg.asset(key=["chaos", "hold"])
def hold() -> None:
    """Keeps a run (and with it a slot of the run queue) busy until CHAOS_STATE/release exists."""
    deadline = time.monotonic() + 900
    while not (STATE / "release").exists() and time.monotonic() < deadline:
        time.sleep(1)


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

airflow_instance = AirflowInstance(
    auth_backend=BasicAuthBackend(webserver_url=os.environ["CHAOS_AIRFLOW_URL"], username="admin", password="admin"),
    name=INSTANCE,
)
airflow_state = None
if os.environ.get("CHAOS_STORED_STATE") == "1":
    stored = STATE / "airflow_state.json"
    if not stored.exists():
        stored.write_text(fetch_airflow_state(airflow_instance, dag_selector_fn=lambda dag: dag.dag_id.startswith("chaos_")).to_json())
    airflow_state = AirflowInstanceState.from_json(stored.read_text())

defs = build_defs_from_airflow_instance(
    airflow_instance=airflow_instance,
    # one process per run (the default starts one more per step): the migrated tasks finish sooner
    defs=dg.Definitions.merge(*mapped, dg.Definitions(assets=[hold], executor=dg.in_process_executor)),
    sensor_minimum_interval_seconds=3,
    max_rows_per_tick=10,
    dag_selector_fn=lambda dag: dag.dag_id.startswith("chaos_"),
    airflow_state=airflow_state,
)

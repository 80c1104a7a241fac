"""Peer and observe a real Airflow (the version under test): exact materializations and cursor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    Definitions,
    build_sensor_context,
)

from airlift_dagster import (
    AirflowInstance,
    AirliftSensorCursor,
    BasicAuthBackend,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)
from airlift_testing import SAMPLE_DAGS, AirflowServer

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
DAG_IDS = ["team.sales-daily_v2", "mapped_dag", "failing_dag"]


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(SAMPLE_DAGS, dags)
    server = airflow_server_factory(dags)
    server.wait_for_dags(DAG_IDS)
    return server


def _defs(airflow: AirflowServer) -> Definitions:
    instance = AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=airflow.url, username="admin", password="admin"), name="airflow_one"
    )
    return build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=Definitions.merge(
            dag_defs(
                "team.sales-daily_v2",
                task_defs("extract", AssetSpec(["sales", "raw_orders"])),
                task_defs("transform_left", AssetSpec(["sales", "left"], deps=[["sales", "raw_orders"]])),
                task_defs("transform_right", AssetSpec(["sales", "right"], deps=[["sales", "raw_orders"]])),
                task_defs("load", AssetSpec(["sales", "report"], deps=[["sales", "left"], ["sales", "right"]])),
            ),
            dag_defs("mapped_dag", task_defs("process", AssetSpec("processed_items"))),
            dag_defs("failing_dag", task_defs("fine", AssetSpec("fine_table")), task_defs("broken", AssetSpec("broken_table"))),
        ),
    )


def _tick(defs: Definitions, instance: DagsterInstance, cursor: str | None) -> Any:
    sensor = defs.resolve_sensor_def("airflow_one__airflow_sensor")
    return sensor(build_sensor_context(instance=instance, definitions=defs, cursor=cursor))


def test_peer_and_observe_real_runs(airflow: AirflowServer) -> None:
    defs = _defs(airflow)
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    for dag_id in DAG_IDS:
        assert AssetKey(["airflow_one", "dag", dag_id]) in specs
    assert dag_id in specs[AssetKey(["airflow_one", "dag", dag_id])].metadata["Source code"].value

    with DagsterInstance.ephemeral() as instance:
        first = _tick(defs, instance, None)
        assert not [e for e in first.asset_events if isinstance(e, AssetMaterialization)]
        runs = {dag_id: airflow.trigger_and_wait(dag_id) for dag_id in DAG_IDS}
        assert {d: r["state"] for d, r in runs.items()} == {"team.sales-daily_v2": "success", "mapped_dag": "success", "failing_dag": "failed"}

        # a sensor restarted mid-stream: tick once, then a fresh evaluation from the saved cursor twice
        second = _tick(defs, instance, first.cursor)
        third = _tick(defs, instance, second.cursor)
        replay = _tick(defs, instance, second.cursor)
        events = list(second.asset_events) + list(third.asset_events)
        materializations = [e for e in events if isinstance(e, AssetMaterialization)]
        counts = Counter(e.asset_key.to_user_string() for e in materializations)
        print("\nmaterializations from real Airflow runs:")
        for e in materializations:
            print(f"  {e.asset_key.to_user_string():40s} " + ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in e.metadata.items()))
        assert counts == Counter({
            "sales/raw_orders": 1, "sales/left": 1, "sales/right": 1, "sales/report": 1,
            "airflow_one/dag/team.sales-daily_v2": 1,
            "processed_items": 3,  # one per map index
            "airflow_one/dag/mapped_dag": 1,
            "fine_table": 1,
        })
        order = [e.asset_key.to_user_string() for e in materializations if e.asset_key.path[0] in ("sales", "airflow_one")]
        sales = [k for k in order if k.startswith("sales/") or k.endswith("team.sales-daily_v2")]
        assert sales[0] == "sales/raw_orders"
        assert sales[-2:] == ["sales/report", "airflow_one/dag/team.sales-daily_v2"]
        mapped = sorted(e.metadata["Map index"].value for e in materializations if e.asset_key == AssetKey("processed_items"))
        assert mapped == [0, 1, 2]
        report = next(e for e in materializations if e.asset_key == AssetKey(["sales", "report"]))
        assert report.metadata["Airflow run"].value.startswith(airflow.url)
        assert "load" in report.metadata["Airflow task log"].value
        checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in events if isinstance(e, AssetCheckEvaluation)}
        assert checks[("airflow_one/dag/failing_dag", "airflow_dag_run_succeeded")] is False
        assert checks[("broken_table", "airflow_task_succeeded")] is False
        assert checks[("fine_table", "airflow_task_succeeded")] is True
        assert checks[("airflow_one/dag/team.sales-daily_v2", "airflow_dag_run_succeeded")] is True
        assert not [e for e in replay.asset_events if isinstance(e, AssetMaterialization) and e.asset_key.path[0] != "airflow_one"
                    and e.asset_key in {m.asset_key for m in second.asset_events if isinstance(m, AssetMaterialization)}], \
            "a restarted sensor does not repeat what the saved cursor covers"
        cursor = AirliftSensorCursor.parse(third.cursor)
        assert cursor.high_water is not None
        assert len(cursor.done) == 3
        assert {k.split("\x1f")[0] for k in cursor.done} == set(DAG_IDS)

        # nothing new: nothing emitted
        again = _tick(defs, instance, third.cursor)
        assert not [e for e in again.asset_events if isinstance(e, AssetMaterialization)]


def test_definitions_validate(airflow: AirflowServer) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    env = {**os.environ, "AIRLIFT_TEST_AIRFLOW_URL": airflow.url}
    done = subprocess.run([str(dagster), "definitions", "validate", "-f", str(HERE / "defs_for_validate.py")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

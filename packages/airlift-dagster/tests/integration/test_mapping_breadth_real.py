"""Mapping breadth against a real Airflow (the version under test) and a real Dagster webserver +
daemon running the sensor: an asset mapped to the whole DAG is materialized when the DAG run
succeeds, an asset built by tasks of two DAGs is materialized once per task success, and a check declared with an observed asset (``check_specs=``) is requested by the sensor
and executed by the daemon's run after the Airflow data lands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airlift_testing import AirflowServer
from airlift_testing.dagster import DagsterServer
from airlift_testing.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.extended]

DAG = """
from datetime import datetime

try:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG
    from airflow.operators.python import PythonOperator

with DAG("breadth_daily", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    PythonOperator(task_id="load", python_callable=lambda: "ok") >> PythonOperator(task_id="publish", python_callable=lambda: "ok")

with DAG("breadth_weekly", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    PythonOperator(task_id="load", python_callable=lambda: "ok")
"""

DEFS = """
import os
from datetime import timedelta

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetSpec, multi_asset

from airlift_dagster import (
    AirflowInstance, BasicAuthBackend, SensorSettings, build_defs_from_airflow_instance, built_by_tasks, dag_defs, task_defs,
)
from dagster import Definitions


@multi_asset(specs=[AssetSpec("orders")], check_specs=[AssetCheckSpec("orders_not_empty", asset="orders")], can_subset=True)
def orders(context: AssetExecutionContext):
    for key in sorted(context.selected_asset_check_keys, key=str):
        yield AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=True,
                               metadata={"executed by": "the Dagster daemon's run"})


defs = build_defs_from_airflow_instance(
    airflow_instance=AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=os.environ["AIRLIFT_TEST_AIRFLOW_URL"], username="admin", password="admin"),
        name="breadth",
    ),
    defs=Definitions.merge(
        dag_defs("breadth_daily", task_defs("load", orders), AssetSpec("daily_report")),
        built_by_tasks([("breadth_daily", "publish"), ("breadth_weekly", "load")], AssetSpec("sales")),
    ),
    sensor_minimum_interval_seconds=5,
    sensor_settings=SensorSettings(settle=timedelta(seconds=1), history_window=timedelta(hours=1)),
)
"""

SENSOR = '{repositoryLocationName: "defs.py", repositoryName: "__repository__", sensorName: "breadth__airflow_sensor"}'
CHECKS = """
query Checks($path: [String!]!, $name: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $name, limit: 10) { runId status }
}
"""
MATERIALIZATIONS = """
query Materializations($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) { ... on Asset { assetMaterializations(limit: 10) {
    runId tags { key value } metadataEntries { label ... on TextMetadataEntry { text } } } } }
}
"""


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("breadth-dags")
    (dags / "breadth.py").write_text(DAG)
    server = airflow_server_factory(dags)
    server.wait_for_dags(["breadth_daily", "breadth_weekly"])
    return server


def _materializations(dagster: DagsterServer, path: list[str]) -> list[dict[str, Any]]:
    found = dagster.graphql(MATERIALIZATIONS, {"path": path})["assetOrError"]
    return list(found.get("assetMaterializations") or [])


def test_dag_level_assets_and_declared_checks_in_a_real_daemon(
    airflow: AirflowServer, dagster_server_factory: Callable[..., DagsterServer], tmp_path: Path
) -> None:
    defs_file = tmp_path / "defs.py"
    defs_file.write_text(DEFS)
    dagster = dagster_server_factory(defs_file=defs_file, extra_env={"AIRLIFT_TEST_AIRFLOW_URL": airflow.url})
    started = dagster.graphql(f"mutation {{ startSensor(sensorSelector: {SENSOR}) {{ __typename }} }}")["startSensor"]
    assert started["__typename"] == "Sensor", started
    run_id = airflow.trigger("breadth_daily")
    weekly_run_id = airflow.trigger("breadth_weekly")
    assert airflow.wait_for_run("breadth_daily", run_id)["state"] == "success"
    assert airflow.wait_for_run("breadth_weekly", weekly_run_id)["state"] == "success"

    def check_executed() -> list[dict[str, Any]] | None:
        executions = dagster.graphql(CHECKS, {"path": ["orders"], "name": "orders_not_empty"})["assetCheckExecutions"]
        return executions if any(e["status"] == "SUCCEEDED" for e in executions) else None

    executions = wait_until(check_executed, timeout=240, what=f"the check orders_not_empty run by the daemon ({dagster.home})", interval=2.0)
    print(f"\ncheck executions of orders:orders_not_empty: {executions}")
    assert all(e["runId"] for e in executions), "executed in a Dagster run (the sensor reports no evaluation of it)"

    daily = wait_until(lambda: _materializations(dagster, ["daily_report"]) or None, timeout=60,
                       what="the DAG-level asset's materialization", interval=2.0)
    tags = {t["key"]: t["value"] for t in daily[0]["tags"]}
    metadata = {m["label"]: m.get("text") for m in daily[0]["metadataEntries"]}
    print(f"daily_report materializations: {len(daily)}; tags {tags}")
    assert len(daily) == 1 and metadata["Airflow run id"] == run_id
    assert "airlift/airflow_task_id" not in tags and "airlift/airflow_run_end_date" in tags, "the DAG run's identity"

    def both_sales() -> list[dict[str, Any]] | None:
        found = _materializations(dagster, ["sales"])
        return found if len(found) >= 2 else None

    sales = wait_until(both_sales, timeout=60,
                       what="both materializations of the asset built by two tasks", interval=2.0)
    built_by = sorted(({m["label"]: m.get("text") for m in e["metadataEntries"]}["Airflow run id"],
                       {t["key"]: t["value"] for t in e["tags"]}["airlift/airflow_task_id"]) for e in sales)
    print(f"sales materializations (Airflow run id, task): {built_by}")
    assert built_by == sorted([(run_id, "publish"), (weekly_run_id, "load")])

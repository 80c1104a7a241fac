"""Federation against a real Airflow (the version under test) and a real Dagster webserver + daemon:
a Dagster asset with an automation condition runs after the Airflow run that materialized its
observed upstream, and an executable DAG asset triggers its Airflow DAG (with conf), waits, and its
materialization comes from that Dagster run only (the sensor reports the next, Airflow-triggered run)."""

from __future__ import annotations

from collections.abc import Callable
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

with DAG("fed_orders", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    PythonOperator(task_id="load", python_callable=lambda: "ok")

with DAG("fed_trigger", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    PythonOperator(task_id="work", python_callable=lambda: "ok")
"""

DEFS = """
import os
from datetime import timedelta

from dagster import AssetSpec, AutomationCondition, Definitions, asset

from airlift_dagster import AirflowInstance, BasicAuthBackend, SensorSettings, build_defs_from_airflow_instance, dag_defs, task_defs


@asset(deps=["fed_raw_orders"], automation_condition=AutomationCondition.eager())
def fed_orders_report() -> None:
    pass


defs = Definitions.merge(build_defs_from_airflow_instance(
    airflow_instance=AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=os.environ["AIRLIFT_TEST_AIRFLOW_URL"], username="admin", password="admin"),
        name="fed",
    ),
    defs=dag_defs("fed_orders", task_defs("load", AssetSpec("fed_raw_orders"))),
    executable_dags=["fed_trigger"],
    sensor_minimum_interval_seconds=5,
    sensor_settings=SensorSettings(settle=timedelta(seconds=1), history_window=timedelta(hours=1)),
), Definitions(assets=[fed_orders_report]))  # one Definitions at module scope
"""

LOCATION = '{repositoryLocationName: "defs.py", repositoryName: "__repository__", sensorName: "%s"}'
MATERIALIZATIONS = """
query Materializations($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) { ... on Asset { assetMaterializations(limit: 20) {
    runId timestamp tags { key value } metadataEntries { label ... on TextMetadataEntry { text } } } } }
}
"""
RUN = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("federation-dags")
    (dags / "federation.py").write_text(DAG)
    server = airflow_server_factory(dags)
    server.wait_for_dags(["fed_orders", "fed_trigger"])
    return server


@pytest.fixture(scope="module")
def dagster(airflow: AirflowServer, dagster_server_factory: Callable[..., DagsterServer],
            tmp_path_factory: pytest.TempPathFactory) -> DagsterServer:
    defs_file = tmp_path_factory.mktemp("federation-defs") / "defs.py"
    defs_file.write_text(DEFS)
    server = dagster_server_factory(defs_file=defs_file, extra_env={"AIRLIFT_TEST_AIRFLOW_URL": airflow.url})
    for sensor in ("fed__airflow_sensor", "default_automation_condition_sensor"):
        started = server.graphql(f"mutation {{ startSensor(sensorSelector: {LOCATION % sensor}) {{ __typename }} }}")["startSensor"]
        assert started["__typename"] == "Sensor", started
    return server


def _materializations(dagster: DagsterServer, path: list[str]) -> list[dict[str, Any]]:
    found = dagster.graphql(MATERIALIZATIONS, {"path": path})["assetOrError"]
    return [{**m, "tags": {t["key"]: t["value"] for t in m["tags"]},
             "metadata": {e["label"]: e.get("text") for e in m["metadataEntries"]}} for m in found.get("assetMaterializations") or []]


def _run(dagster: DagsterServer, run_id: str) -> dict[str, Any]:
    run = dagster.graphql(RUN, {"id": run_id})["runOrError"]
    return {"status": run["status"], "tags": {t["key"]: t["value"] for t in run["tags"]}}


def test_an_eager_asset_runs_after_the_airflow_run_that_materialized_its_upstream(
    airflow: AirflowServer, dagster: DagsterServer,
) -> None:
    run_id = airflow.trigger("fed_orders")
    assert airflow.wait_for_run("fed_orders", run_id)["state"] == "success"
    report = wait_until(lambda: _materializations(dagster, ["fed_orders_report"]) or None, timeout=300, interval=3.0,
                        what=f"fed_orders_report materialized by the automation condition sensor ({dagster.home})")
    [upstream] = _materializations(dagster, ["fed_raw_orders"])
    run = _run(dagster, report[0]["runId"])
    print(f"\nfed_raw_orders materialized by the sensor for Airflow run {upstream['metadata']['Airflow run id']} at "
          f"{upstream['timestamp']}; fed_orders_report by Dagster run {report[0]['runId']} at {report[0]['timestamp']}, "
          f"automation tags { {k: v for k, v in run['tags'].items() if 'automation' in k or 'sensor' in k} }")
    assert upstream["metadata"]["Airflow run id"] == run_id and upstream["runId"] == ""
    assert len(report) == 1 and float(report[0]["timestamp"]) > float(upstream["timestamp"])
    assert run["tags"].get("dagster/from_automation_condition") == "true", run["tags"]


def test_an_executable_dag_asset_triggers_the_dag_and_its_materialization_comes_from_that_run_once(
    airflow: AirflowServer, dagster: DagsterServer,
) -> None:
    airflow.unpause("fed_trigger")
    params = {"selector": {"repositoryLocationName": "defs.py", "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
                           "assetSelection": [{"path": ["fed", "dag", "fed_trigger"]}]},
              "runConfigData": {"ops": {"fed__run_dag__fed_trigger": {"config": {"conf": {"region": "eu"}}}}}}
    launched = dagster.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    dagster_run_id = launched["run"]["runId"]
    finished = wait_until(lambda: (r if (r := _run(dagster, dagster_run_id))["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None),
                          timeout=400, interval=3.0, what=f"the Dagster run {dagster_run_id} that triggers fed_trigger")
    assert finished["status"] == "SUCCESS", dagster.log_tail()
    triggered = finished["tags"]["airlift/airflow_run_id"]
    airflow_run = airflow.get_run("fed_trigger", triggered)
    assert airflow_run["state"] == "success" and airflow_run["conf"] == {"region": "eu"}
    # a second run, triggered in Airflow: once the sensor reported it, it has read past the first one
    later = airflow.trigger("fed_trigger")
    assert airflow.wait_for_run("fed_trigger", later)["state"] == "success"

    def both() -> list[dict[str, Any]] | None:
        found = _materializations(dagster, ["fed", "dag", "fed_trigger"])
        return found if any(m["metadata"].get("Airflow run id") == later for m in found) else None

    found = wait_until(both, timeout=300, interval=3.0, what="the sensor's materialization of the Airflow-triggered run")
    by_run = sorted((m["metadata"]["Airflow run id"], m["runId"]) for m in found)
    print(f"\nfed_trigger DAG asset materializations (Airflow run id, Dagster run id): {by_run}")
    assert sorted(by_run) == sorted([(triggered, dagster_run_id), (later, "")])

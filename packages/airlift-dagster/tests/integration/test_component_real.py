"""AirflowInstanceComponent in a `dg` project against a real Airflow (the version under test) and a
real Dagster webserver + daemon: scaffolded by `dg scaffold defs`, its state stored by
`dg utils refresh-defs-state`, then `dagster definitions validate`, a webserver start and a code
location reload make no Airflow request (counted by a pass-through proxy in front of Airflow); with
``mirror_runs`` the Airflow DAG run appears once in Dagster's GraphQL run list, with its
materialization, however many ticks pass."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airlift_testing import AirflowServer
from airlift_testing.dagster import DagsterServer
from airlift_testing.dg_project import run_in, workspace_for, write_dg_project
from airlift_testing.fault_proxy import FaultProxy
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

with DAG("component_dag", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    PythonOperator(task_id="load", python_callable=lambda: "ok") >> PythonOperator(task_id="publish", python_callable=lambda: "ok")
"""

ATTRIBUTES = """
attributes:
  name: airflow_component
  webserver_url: "{{ env.AIRLIFT_TEST_AIRFLOW_URL }}"
  auth:
    kind: basic
    username: admin
    password: "{{ env.AIRLIFT_TEST_AIRFLOW_PASSWORD }}"
  dags:
    ids: [component_dag]
  mappings:
    - dag_id: component_dag
      task_id: load
      assets:
        - key: warehouse/loaded
  sensor:
    minimum_interval_seconds: 5
    settle_seconds: 1
    history_window_seconds: 3600
    default_status: stopped
    mirror_runs: true
"""

RUNS = """
query Mirrored($tag: String!) {
  runsOrError(filter: {tags: [{key: "airlift/mirrored_airflow_run", value: $tag}]}) {
    __typename
    ... on Runs { results { runId status jobName startTime endTime tags { key value } repositoryOrigin { repositoryLocationName }
                            assetMaterializations { assetKey { path } } } }
  }
}
"""


SENSOR = ('{repositoryLocationName: "airflow_peer", repositoryName: "__repository__", '
          'sensorName: "airflow_component__airflow_sensor"}')
TICKS = f"{{ sensorOrError(sensorSelector: {SENSOR}) {{ ... on Sensor {{ sensorState {{ ticks(limit: 50) {{ timestamp status }} }} }} }} }}"


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> AirflowServer:
    dags = tmp_path_factory.mktemp("component-dags")
    (dags / "component_dag.py").write_text(DAG)
    server = airflow_server_factory(dags)
    server.wait_for_dags(["component_dag"])
    return server


@pytest.fixture(scope="module")
def proxy(airflow: AirflowServer) -> Iterator[FaultProxy]:
    """Passes every request through to Airflow, counting them."""
    with FaultProxy(airflow.url, seed=1, rate=0.0) as counting:
        yield counting


def _runs(dagster: DagsterServer) -> list[dict[str, Any]]:
    data = dagster.graphql(RUNS, {"tag": "true"})["runsOrError"]
    assert data["__typename"] == "Runs", data
    return list(data["results"])


def test_component_from_yaml_reload_without_requests_and_mirrored_runs(
    airflow: AirflowServer, proxy: FaultProxy, dagster_server_factory: Callable[..., DagsterServer], tmp_path: Path
) -> None:
    project = tmp_path / "airflow-peer"
    package = write_dg_project(project, "airflow_peer")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME",)}
    env.update({"PYTHONPATH": str(project / "src"), "AIRLIFT_TEST_AIRFLOW_URL": proxy.url, "AIRLIFT_TEST_AIRFLOW_PASSWORD": "admin",
                "DAGSTER_HOME": str(tmp_path / "dg-home")})
    (tmp_path / "dg-home").mkdir()

    run_in(project, env, "dg", "scaffold", "defs", "airlift_dagster.AirflowInstanceComponent", "airflow")
    defs_yaml = package / "defs" / "airflow" / "defs.yaml"
    assert defs_yaml.read_text().startswith("type: airlift_dagster.AirflowInstanceComponent")
    defs_yaml.write_text("type: airlift_dagster.AirflowInstanceComponent\n" + ATTRIBUTES)

    before = proxy.requests
    run_in(project, env, "dg", "utils", "refresh-defs-state")
    refreshed = proxy.requests - before
    assert refreshed > 0
    before = proxy.requests
    validated = run_in(project, env, "dagster", "definitions", "validate", "-m", "airflow_peer.definitions")
    assert "airflow" in validated.lower()
    assert proxy.requests == before, proxy.log[-10:]

    workspace = workspace_for(tmp_path / "workspace.yaml", project, "airflow_peer")
    dagster = dagster_server_factory(workspace_file=workspace, extra_env={k: env[k] for k in ("AIRLIFT_TEST_AIRFLOW_URL", "AIRLIFT_TEST_AIRFLOW_PASSWORD")})
    reload = dagster.graphql(
        'mutation { reloadRepositoryLocation(repositoryLocationName: "airflow_peer") { __typename '
        "... on WorkspaceLocationEntry { locationOrLoadError { __typename } } } }"
    )["reloadRepositoryLocation"]
    assert reload["locationOrLoadError"]["__typename"] == "RepositoryLocation", reload
    assert proxy.requests == before, f"a load or reload asked Airflow: {proxy.log[-10:]}"
    print(f"\nrefresh-defs-state: {refreshed} Airflow requests; definitions validate + webserver and daemon loads + reload: "
          f"{proxy.requests - before}")

    started = dagster.graphql(f"mutation {{ startSensor(sensorSelector: {SENSOR}) {{ __typename }} }}")["startSensor"]
    assert started["__typename"] == "Sensor", started
    run_id = airflow.trigger("component_dag")
    airflow.wait_for_run("component_dag", run_id)

    def mirrored_success() -> list[dict[str, Any]] | None:
        runs = _runs(dagster)
        return runs if any(r["status"] == "SUCCESS" for r in runs) else None

    runs = wait_until(mirrored_success, timeout=180, what=f"the mirrored run of {run_id} in Dagster ({dagster.home})", interval=2.0)
    seen_at = time.time()

    def ticks_since() -> bool:  # three more sensor ticks re-read the same window: nothing more may appear
        sensor = dagster.graphql(TICKS)["sensorOrError"]
        return sum(1 for t in sensor["sensorState"]["ticks"] if t["timestamp"] > seen_at) >= 3

    wait_until(ticks_since, timeout=120, what="three more sensor ticks", interval=2.0)
    runs = _runs(dagster)
    print(f"mirrored runs as Dagster's GraphQL lists them: {runs}")
    assert len(runs) == 1, runs
    run = runs[0]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["airlift/airflow_dag_id"] == "component_dag" and tags["airlift/airflow_run_id"] == run_id
    assert tags["airlift/airflow_instance"] == "airflow_component"
    assert tags["airlift/airflow_run_url"].startswith(proxy.url)
    assert run["startTime"] is not None and run["endTime"] >= run["startTime"]
    assert run["repositoryOrigin"]["repositoryLocationName"] == "airflow_peer"  # what Dagster's run timeline needs
    assert ["warehouse", "loaded"] in [m["assetKey"]["path"] for m in run["assetMaterializations"]]
    shutil.rmtree(tmp_path / "dg-home", ignore_errors=True)

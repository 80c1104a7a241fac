"""Real Airflow (2.11 or 3.3) and a real Dagster webserver + daemon: one DAG file breaks while both run.

The code location reloads with every asset (the broken DAG's from what Airflow last parsed), the broken
DAG's asset shows Airflow's import error and fails its ``airflow_dag_imports`` check, the sensor keeps
materializing the other DAG's runs, and fixing the file restores the DAG.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airlift_testing import AirflowServer, DagsterServer, wait_until

pytestmark = pytest.mark.integration

DAG = '''
from datetime import datetime
from airflow import DAG
try:
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:
    from airflow.operators.empty import EmptyOperator

with DAG("{dag_id}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    EmptyOperator(task_id="first") >> EmptyOperator(task_id="second")
'''

DEFS = '''
import os
from dagster import AssetSpec, Definitions
from airlift_dagster import AirflowInstance, BasicAuthBackend, build_defs_from_airflow_instance, dag_defs, task_defs

defs = build_defs_from_airflow_instance(
    airflow_instance=AirflowInstance(
        auth_backend=BasicAuthBackend(webserver_url=os.environ["AIRLIFT_TEST_AIRFLOW_URL"], username="admin", password="admin"),
        name="broken_test",
    ),
    defs=Definitions.merge(
        dag_defs("steady", task_defs("first", AssetSpec("steady_first"))),
        dag_defs("fragile", task_defs("first", AssetSpec("fragile_first")), task_defs("second", AssetSpec("fragile_second"))),
    ),
    sensor_minimum_interval_seconds=5,
)
'''

LOCATION = "broken_defs.py"
NODE = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { __typename
  ... on AssetNode { description assetChecksOrError { ... on AssetChecks { checks { name } } } } } }"""
EXECUTIONS = """query($path: [String!]!) { assetCheckExecutions(assetKey: {path: $path}, checkName: "airflow_dag_imports", limit: 5) {
  status evaluation { description } } }"""
MATERIALIZATIONS = """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations(limit: 10) { runId } } } }"""


def _reload(dagster: DagsterServer) -> dict[str, Any]:
    answer = dagster.graphql(
        "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename "
        "... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message } } } } }",
        {"name": LOCATION}, timeout=300,  # the reload reads Airflow: slow on a busy machine
    )["reloadRepositoryLocation"]
    return dict(answer)


def _node(dagster: DagsterServer, path: list[str]) -> dict[str, Any]:
    return dict(dagster.graphql(NODE, {"path": path})["assetNodeOrError"])


def test_a_broken_dag_file_never_blanks_the_code_location(
    airflow_server_factory: Callable[..., AirflowServer], dagster_server_factory: Callable[..., DagsterServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    dags = tmp_path_factory.mktemp("broken-dags")
    for dag_id in ("steady", "fragile"):
        (dags / f"{dag_id}.py").write_text(DAG.format(dag_id=dag_id))
    airflow = airflow_server_factory(dags, startup_timeout=600)
    airflow.wait_for_dags(["steady", "fragile"])
    defs_file = tmp_path_factory.mktemp("broken-defs") / LOCATION
    defs_file.write_text(DEFS)
    dagster = dagster_server_factory(defs_file=defs_file, extra_env={"AIRLIFT_TEST_AIRFLOW_URL": airflow.url}, startup_timeout=600)
    fragile_dag = ["broken_test", "dag", "fragile"]
    assert "airflow_dag_imports" not in str(_node(dagster, fragile_dag))

    # a teammate's typo: Airflow reports an import error for the file (and Airflow 3 drops the DAG from its list)
    fragile_file = dags / "fragile.py"
    fragile_file.write_text(DAG.format(dag_id="fragile") + "\nthis is a typo\n")
    airflow.reparse(fragile_file)
    reloaded = _reload(dagster)
    assert reloaded["locationOrLoadError"]["__typename"] == "RepositoryLocation", reloaded
    node = _node(dagster, fragile_dag)
    assert node["__typename"] == "AssetNode", node
    assert "Airflow cannot import the file of DAG 'fragile'" in node["description"] and "SyntaxError" in node["description"]
    assert {"name": "airflow_dag_imports"} in node["assetChecksOrError"]["checks"]
    for path in (["fragile_first"], ["fragile_second"], ["steady_first"], ["broken_test", "dag", "steady"]):
        assert _node(dagster, path)["__typename"] == "AssetNode", path

    # the sensor fails the check once, and keeps reporting the other DAG's runs
    def failed_check() -> list[dict[str, Any]] | None:
        found = dagster.graphql(EXECUTIONS, {"path": fragile_dag})["assetCheckExecutions"]
        return found or None

    executions = wait_until(failed_check, timeout=180, what="the failed airflow_dag_imports check", interval=2.0)
    assert [e["status"] for e in executions] == ["FAILED"], executions
    assert "SyntaxError" in executions[0]["evaluation"]["description"]
    run_id = airflow.trigger("steady")
    airflow.wait_for_run("steady", run_id)

    def steady_materialized() -> bool:
        asset = dagster.graphql(MATERIALIZATIONS, {"path": ["steady_first"]})["assetOrError"]
        return bool(asset.get("assetMaterializations"))  # the only run of "steady" is this one

    wait_until(steady_materialized, timeout=180, what=f"steady_first materialized for {run_id}", interval=2.0)
    assert len(dagster.graphql(EXECUTIONS, {"path": fragile_dag})["assetCheckExecutions"]) == 1

    # fixing the file restores the DAG
    fragile_file.write_text(DAG.format(dag_id="fragile"))
    airflow.reparse(fragile_file)
    assert _reload(dagster)["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    node = _node(dagster, fragile_dag)
    assert "Airflow cannot import" not in (node["description"] or "")
    assert {"name": "airflow_dag_imports"} not in node["assetChecksOrError"]["checks"]
    print(f"\nAirflow {airflow.version}: broken DAG kept with its import error; sensor kept working; fixed file restored it")

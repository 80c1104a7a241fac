"""A YAML-only project migrates a task, on a real Airflow (the version under test) and a real Dagster
webserver + daemon: the ``AirflowInstanceComponent`` maps the task ``by_key`` to an executable asset
the project defines in its defs folder, the migration-state file says ``migrated: true``, and the
Airflow run's task is built by one Dagster run of that asset (the Airflow callable never runs)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from airlift_testing import AirflowServer, repo_root
from airlift_testing.dagster import DagsterServer
from airlift_testing.dg_project import run_in, workspace_for, write_dg_project

pytestmark = [pytest.mark.integration, pytest.mark.extended]

DAG = """
import os
from datetime import datetime
from pathlib import Path

from airlift_airflow import load_migration_state_from_yaml, mark_as_dagster_migrating

try:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _load_in_airflow():
    (Path(os.environ["AIRLIFT_TEST_MARKERS"]) / "airflow_ran_load").write_text("airflow")


with DAG("yaml_only_dag", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    PythonOperator(task_id="load", python_callable=_load_in_airflow) >> PythonOperator(task_id="publish", python_callable=lambda: "ok")

mark_as_dagster_migrating(global_vars=globals(),
                          migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"))
"""

STATE = "tasks:\n  load:\n    migrated: true\n  publish:\n    migrated: false\n"

# the project's executable asset, as any Dagster project defines it (nothing of Airlift)
WAREHOUSE = """
import os
from pathlib import Path

from dagster import asset


@asset(key=["warehouse", "loaded"])
def loaded() -> None:
    (Path(os.environ["AIRLIFT_TEST_MARKERS"]) / "dagster_ran_load").write_text("dagster")
"""

DEFS_YAML = """
type: airlift_dagster.AirflowInstanceComponent
attributes:
  name: yaml_only_airflow
  webserver_url: "{{ env.AIRLIFT_TEST_AIRFLOW_URL }}"
  auth:
    kind: basic
    username: admin
    password: "{{ env.AIRLIFT_TEST_AIRFLOW_PASSWORD }}"
  dags:
    ids: [yaml_only_dag]
  mappings:
    - dag_id: yaml_only_dag
      task_id: load
      by_key: [warehouse/loaded]
  sensor:
    minimum_interval_seconds: 5
    default_status: stopped
"""

RUNS = """query($tag: String!) { runsOrError(filter: {tags: [{key: "airlift/airflow_run_id", value: $tag}]}) {
  ... on Runs { results { runId status tags { key value } assetMaterializations { assetKey { path } } } } } }"""


def test_a_yaml_only_project_migrates_a_task_mapped_by_key(
    airflow_server_factory: Callable[..., AirflowServer], dagster_server_factory: Callable[..., DagsterServer], tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    project = tmp_path / "yaml-only"
    package = write_dg_project(project, "yaml_only")
    (package / "defs" / "airflow").mkdir()
    (package / "defs" / "warehouse.py").write_text(WAREHOUSE)
    (package / "defs" / "airflow" / "defs.yaml").write_text(DEFS_YAML)
    dags = tmp_path / "dags"
    (dags / "migration_state").mkdir(parents=True)
    (dags / "yaml_only_dag.py").write_text(DAG)
    (dags / "migration_state" / "yaml_only_dag.yaml").write_text(STATE)

    # Dagster first (no stored Airflow state yet: the component defines nothing), so Airflow knows its URL
    workspace = workspace_for(tmp_path / "workspace.yaml", project, "yaml_only")
    env_for_dagster = {"AIRLIFT_TEST_MARKERS": str(markers), "AIRLIFT_TEST_AIRFLOW_PASSWORD": "admin"}
    dagster = dagster_server_factory(workspace_file=workspace, extra_env={**env_for_dagster, "AIRLIFT_TEST_AIRFLOW_URL": "http://unused"})
    packages = repo_root() / "packages"
    airflow = airflow_server_factory(
        dags, extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
        extra_env={"AIRLIFT_TEST_MARKERS": str(markers), "AIRFLOW_CONN_DAGSTER_DEFAULT": dagster.url}, startup_timeout=600,
    )
    airflow.wait_for_dags(["yaml_only_dag"])

    # the state the component keeps, written by the refresh command; then the code location reloads it
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update({"PYTHONPATH": str(project / "src"), "AIRLIFT_TEST_AIRFLOW_URL": airflow.url, **env_for_dagster,
                "DAGSTER_HOME": str(dagster.home)})
    run_in(project, env, "dg", "utils", "refresh-defs-state")
    reload = dagster.graphql(
        'mutation { reloadRepositoryLocation(repositoryLocationName: "yaml_only") { __typename '
        "... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message } } } } }",
        timeout=180,  # a code-location reload on a loaded machine took longer than 30 s on Airflow 3
    )["reloadRepositoryLocation"]
    assert reload["locationOrLoadError"]["__typename"] == "RepositoryLocation", reload

    run = airflow.trigger_and_wait("yaml_only_dag", timeout=400)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances("yaml_only_dag", run["dag_run_id"])}
    assert run["state"] == "success", (states, airflow.log_tail())
    assert (markers / "dagster_ran_load").exists()
    assert not (markers / "airflow_ran_load").exists()
    runs = dagster.graphql(RUNS, {"tag": run["dag_run_id"]})["runsOrError"]["results"]
    print(f"\nDagster runs of Airflow run {run['dag_run_id']}: {runs}")
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert tags["airlift/airflow_task_id"] == "load" and tags["airlift/airflow_instance"] == "yaml_only_airflow"
    assert [m["assetKey"]["path"] for m in runs[0]["assetMaterializations"]] == [["warehouse", "loaded"]]

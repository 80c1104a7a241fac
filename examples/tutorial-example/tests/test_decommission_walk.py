"""The guide's Step 4 on the tutorial's DAG, with the commands the tutorial's banner prints, on real Airflow
and a real Dagster webserver + daemon loading ``dagster_defs/decommission.py``: migrate the three tasks,
run the DAG (each task runs in Dagster), decommission it (``--dry-run``, then for real), reload the code
location, launch the job ``rebuild_customers_list_decommissioned`` (the DAG has no schedule, so Dagster gets
the job only), then ``--undo``. Before the migration, and without ``--instance``, the command refuses.

Extended (``uvx nox -s extended-tutorial-airflow3``, or ``-airflow2``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airlift_protocol import AIRFLOW_RUN_ID_RUN_TAG, MIGRATION_DOC_MARKER
from airlift_testing import AirflowServer, DagsterServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.extended]
DAG_ID = "rebuild_customers_list"
INSTANCE = "airflow_instance_one"
TASKS = ["load_raw_customers", "run_dbt_model", "export_customers"]
JOB = "rebuild_customers_list_decommissioned"
DAG_ASSET = f"{INSTANCE}/dag/{DAG_ID}"
ASSETS = ["raw_data/raw_customers", "raw_data/raw_orders", "raw_data/raw_payments", "stg_customers", "stg_orders",
          "stg_payments", "customers", "customers_csv"]
MATERIALIZATIONS = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename ... on Asset {
  assetMaterializations(limit: 500) { runId } } } }"""
RUNS = """query($tag: String!) { runsOrError(filter: {tags: [{key: "%s", value: $tag}]}) {
  ... on Runs { results { runId status } } } }""" % AIRFLOW_RUN_ID_RUN_TAG
RUN = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
RELOAD = """mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
  __typename ... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message } } } } }"""
REPOSITORY = """query($sel: RepositorySelector!) { repositoryOrError(repositorySelector: $sel) {
  __typename ... on Repository { jobs { name } schedules { name } sensors { name } } } }"""
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def _materializations(dagster: DagsterServer, asset: str) -> list[str]:
    node = dagster.graphql(MATERIALIZATIONS, {"key": {"path": asset.split("/")}})["assetOrError"]
    return [m["runId"] for m in node.get("assetMaterializations") or []] if node["__typename"] == "Asset" else []


def test_migrate_every_task_then_decommission_the_tutorial_dag(
    world: dict[str, Any], tutorial_dagster: Callable[..., DagsterServer]
) -> None:
    airflow: AirflowServer = world["airflow"]
    dags: Path = world["dags"]
    env: dict[str, str] = world["env"]
    decommissioned = world["tmp"] / "decommissioned"
    airflow.unpause(DAG_ID)
    dagster = tutorial_dagster("decommission", AIRLIFT_DECOMMISSIONED_DIR=str(decommissioned))
    assert dagster.venv is not None
    airlift_command = str(dagster.venv / "bin" / "airlift")
    location = dagster.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"][0]["name"]
    repository = {"repositoryLocationName": location, "repositoryName": "__repository__"}
    cli_env = {**os.environ, **env, "NO_COLOR": "1", "COLUMNS": "250", "AIRLIFT_AIRFLOW_URL": airflow.url,
               "AIRLIFT_AIRFLOW_USERNAME": "admin", "AIRLIFT_AIRFLOW_PASSWORD": "admin"}

    def airlift(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([airlift_command, *args], capture_output=True, text=True, env=cli_env, timeout=300, check=False)
        print(f"\n$ airlift {' '.join(args)}\n{done.stdout}{done.stderr}")
        return done

    def decommission(*extra: str) -> subprocess.CompletedProcess[str]:
        return airlift("decommission", "-d", str(dags), "--instance", INSTANCE, "--out-dir", str(decommissioned), DAG_ID, *extra)

    def reload() -> dict[str, Any]:
        answer = dagster.graphql(RELOAD, {"name": location}, timeout=300)["reloadRepositoryLocation"]  # it reads Airflow again
        assert answer["locationOrLoadError"]["__typename"] != "PythonError", answer
        return dict(dagster.graphql(REPOSITORY, {"sel": repository})["repositoryOrError"])

    # refused, nothing changed: before the migration (every task still runs in Airflow), and without --instance
    # (no --defs either: the command cannot tell the DAG asset's key)
    early = decommission()
    assert early.returncode == 3 and "tasks not migrated" in early.stdout + early.stderr, early.stdout + early.stderr
    unnamed = airlift("decommission", "-d", str(dags), "--out-dir", str(decommissioned), DAG_ID, "--dry-run")
    assert unnamed.returncode == 3 and "pass --instance NAME" in unnamed.stdout + unnamed.stderr, unnamed.stdout + unnamed.stderr
    assert not decommissioned.exists() and airflow.get(f"/dags/{DAG_ID}")["is_paused"] is False

    # Step 3, every task: the banner's `airlift state set ... --migrated`, then Airflow re-parses
    migrated = airlift("state", "set", "-d", str(dags), DAG_ID, *TASKS, "--migrated")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    (dags / f"{DAG_ID}.py").touch()

    def parsed() -> bool:
        return all(MIGRATION_DOC_MARKER in (t.get("doc_md") or "") for t in airflow.get(f"/dags/{DAG_ID}/tasks")["tasks"])

    wait_until(parsed, timeout=180, interval=2, what="Airflow to re-parse with every task migrated")
    run = airflow.trigger_and_wait(DAG_ID, timeout=600)
    assert run["state"] == "success", airflow.log_tail()
    task_runs = dagster.graphql(RUNS, {"tag": run["dag_run_id"]})["runsOrError"]["results"]
    assert len(task_runs) == len(TASKS) and all(r["status"] == "SUCCESS" for r in task_runs), task_runs
    # the daemon's sensor reports the DAG run's success on the DAG asset
    wait_until(lambda: _materializations(dagster, DAG_ASSET) or None, timeout=300, interval=5,
               what="the sensor's materialization of the DAG asset")
    before = {asset: _materializations(dagster, asset) for asset in [*ASSETS, DAG_ASSET]}
    assert all(before[a] for a in ASSETS), before

    # Step 4: the dry run changes nothing
    dry = decommission("--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "dry run: would write" in dry.stdout and not decommissioned.exists()
    assert airflow.get(f"/dags/{DAG_ID}")["is_paused"] is False

    # decommission: Airflow pauses the DAG; after a reload Dagster has the job, and no schedule (the DAG has none)
    done = decommission()
    assert done.returncode == 0, done.stdout + done.stderr
    assert airflow.get(f"/dags/{DAG_ID}")["is_paused"] is True
    written = (decommissioned / f"{DAG_ID}.yaml").read_text()
    assert f"airflow_instance: {INSTANCE}\n" in written and "kind: manual\n" in written, written  # the peered DAG asset's key
    loaded = reload()
    assert JOB in {j["name"] for j in loaded["jobs"]}, loaded
    assert not [s["name"] for s in loaded["schedules"] + loaded["sensors"] if s["name"].startswith(JOB)], loaded

    # the job builds every asset of the DAG in Dagster; the earlier materializations stay
    params = {"selector": {**repository, "jobName": JOB}, "runConfigData": {}}
    launched = dagster.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    job_run = launched["run"]["runId"]
    finished = wait_until(lambda: (s if (s := dagster.graphql(RUN, {"id": job_run})["runOrError"]["status"])
                                   in ("SUCCESS", "FAILURE", "CANCELED") else None),
                          timeout=600, interval=3, what=f"the run {job_run} of {JOB}")
    assert finished == "SUCCESS", dagster.log_tail()
    after = {asset: _materializations(dagster, asset) for asset in [*ASSETS, DAG_ASSET]}
    print(f"\nmaterializations before / after the job's run {job_run} (Airflow {airflow.version}): "
          + ", ".join(f"{a} {len(before[a])}/{len(after[a])}" for a in after))
    for asset in ASSETS:
        assert job_run in after[asset], asset
        assert set(before[asset]) <= set(after[asset]) and len(after[asset]) == len(before[asset]) + 1, asset
    assert after[DAG_ASSET] == before[DAG_ASSET], "the DAG asset's history stays as the sensor recorded it"
    assert (world["tmp"] / "export" / "customers.csv").read_text().count("\n") == 51

    # undo: Airflow schedules the DAG again; after a reload the job is gone
    undone = decommission("--undo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert airflow.get(f"/dags/{DAG_ID}")["is_paused"] is False
    assert not (decommissioned / f"{DAG_ID}.yaml").exists()
    assert JOB not in {j["name"] for j in reload()["jobs"]}

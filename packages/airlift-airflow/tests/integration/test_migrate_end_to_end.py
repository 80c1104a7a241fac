"""Real Airflow (2.11 or 3.3) and a real Dagster: migrate a task, fail it, roll it back, re-attach.

The test venv has neither airflow nor dagster: both servers are driven over HTTP.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airlift_protocol import AIRFLOW_RUN_ID_RUN_TAG, MIGRATION_DOC_MARKER, set_task_migrated
from airlift_testing import AirflowServer, DagsterServer, repo_root, wait_until

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
DAG_ID = "e2e_pipeline"

RUNS = """query($tag: String!) { runsOrError(filter: {tags: [{key: "%s", value: $tag}]}) {
  ... on Runs { results { runId status tags { key value } assetMaterializations { assetKey { path } } } } } }""" % AIRFLOW_RUN_ID_RUN_TAG


def _task_log(airflow: AirflowServer, run_id: str, task_id: str) -> str:
    logs = [p for p in (airflow.home / "logs").rglob("*.log") if f"task_id={task_id}" in str(p) and run_id.replace(":", "") in str(p).replace(":", "").replace("%3A", "")]
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs))


@dataclass
class Servers:
    airflow: AirflowServer
    dagster: DagsterServer
    dags: Path
    markers: Path


@pytest.fixture(scope="module")
def servers(
    airflow_server_factory: Callable[..., AirflowServer],
    dagster_server_factory: Callable[..., DagsterServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Servers:
    root = tmp_path_factory.mktemp("airlift-airflow-e2e")
    markers = root / "markers"
    markers.mkdir()
    dags = root / "dags"
    shutil.copytree(HERE / "e2e_dags", dags)
    state_folder = dags / "migration_state"
    set_task_migrated(state_folder, dag_id=DAG_ID, task_id="first", migrated=False)
    set_task_migrated(state_folder, dag_id=DAG_ID, task_id="middle", migrated=True)
    set_task_migrated(state_folder, dag_id=DAG_ID, task_id="last", migrated=False)
    set_task_migrated(state_folder, dag_id="e2e_reattach", task_id="slow", migrated=True)

    env = {"AIRLIFT_E2E_MARKERS": str(markers)}
    dagster = dagster_server_factory(defs_file=HERE / "dagster_defs.py", extra_packages=[], extra_env=env)
    packages = repo_root() / "packages"
    airflow = airflow_server_factory(
        dags,
        extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
        extra_env={**env, "AIRFLOW_CONN_DAGSTER_DEFAULT": dagster.url},
    )
    airflow.wait_for_dags([DAG_ID, "e2e_reattach"])
    return Servers(airflow=airflow, dagster=dagster, dags=dags, markers=markers)


def test_migrate_fail_and_roll_back(servers: Servers) -> None:
    airflow, dagster, dags, markers = servers.airflow, servers.dagster, servers.dags, servers.markers
    state_folder = dags / "migration_state"

    # the migration state is readable over REST: the middle task carries the marker
    tasks = {t["task_id"]: t for t in airflow.get(f"/dags/{DAG_ID}/tasks")["tasks"]}
    assert MIGRATION_DOC_MARKER in (tasks["middle"]["doc_md"] or "")
    assert MIGRATION_DOC_MARKER not in (tasks["first"]["doc_md"] or "")
    assert "airlift:migrating" in {t["name"] for t in airflow.get(f"/dags/{DAG_ID}")["tags"]}
    dag_doc = airflow.get(f"/dags/{DAG_ID}/details")["doc_md"]
    assert "| `middle` | Dagster |" in dag_doc and "| `first` | Airflow |" in dag_doc

    # 1. migrated: the middle task's asset is built by a Dagster run carrying the Airflow tags
    run = airflow.trigger_and_wait(DAG_ID, timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(DAG_ID, run["dag_run_id"])}
    assert run["state"] == "success", (states, airflow.log_tail())
    assert states == {"first": "success", "middle": "success", "last": "success"}
    assert (markers / "dagster_ran_middle").exists()
    assert not (markers / "airflow_ran_middle").exists()
    dagster_runs = dagster.graphql(RUNS, {"tag": run["dag_run_id"]})["runsOrError"]["results"]
    assert len(dagster_runs) == 1
    assert dagster_runs[0]["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in dagster_runs[0]["tags"]}
    assert tags["airlift/airflow_dag_id"] == DAG_ID
    assert tags["airlift/airflow_task_id"] == "middle"
    assert tags["airlift/airflow_try_number"] == "1"
    assert [m["assetKey"]["path"] for m in dagster_runs[0]["assetMaterializations"]] == [["e2e", "middle_table"]]
    log = _task_log(airflow, run["dag_run_id"], "middle")
    run_link = f"{dagster.url}/runs/{dagster_runs[0]['runId']}"
    assert run_link in log
    print("\n--- Airflow task log of the proxied task (migrated) ---")
    print("\n".join(line for line in log.splitlines() if "Dagster" in line))

    # 2. the Dagster asset fails: the Airflow task fails with the run link
    (markers / "make_dagster_fail").write_text("1")
    failed = airflow.trigger_and_wait(DAG_ID, timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(DAG_ID, failed["dag_run_id"])}
    assert failed["state"] == "failed"
    assert states["middle"] == "failed"
    assert states["last"] == "upstream_failed"
    failed_runs = dagster.graphql(RUNS, {"tag": failed["dag_run_id"]})["runsOrError"]["results"]
    assert [r["status"] for r in failed_runs] == ["FAILURE"]
    failed_log = _task_log(airflow, failed["dag_run_id"], "middle")
    assert f"{dagster.url}/runs/{failed_runs[0]['runId']}" in failed_log
    assert "middle_table failed on purpose" in failed_log
    print("\n--- Airflow task log of the proxied task (Dagster run failed) ---")
    print("\n".join(line for line in failed_log.splitlines() if "Dagster" in line or "failed on purpose" in line)[:3000])
    (markers / "make_dagster_fail").unlink()

    # 3. roll back: flip the flag, let Airflow re-parse, the original operator runs again
    set_task_migrated(state_folder, dag_id=DAG_ID, task_id="middle", migrated=False)
    (dags / "e2e_pipeline.py").touch()

    def rolled_back() -> Any:
        task = next(t for t in airflow.get(f"/dags/{DAG_ID}/tasks")["tasks"] if t["task_id"] == "middle")
        return MIGRATION_DOC_MARKER not in (task.get("doc_md") or "")

    wait_until(rolled_back, timeout=180, what="Airflow to re-parse the rolled-back DAG", interval=2)
    time.sleep(2)
    back = airflow.trigger_and_wait(DAG_ID, timeout=300)
    assert back["state"] == "success"
    assert (markers / "airflow_ran_middle").read_text() == "airflow"
    assert dagster.graphql(RUNS, {"tag": back["dag_run_id"]})["runsOrError"]["results"] == []


def test_retry_reattaches_to_the_dagster_run_in_flight(servers: Servers) -> None:
    """Try 1 hits its execution_timeout while the Dagster run goes on; the next tries re-attach to
    that run (or, if it ended in between, reuse its success) instead of launching another."""
    airflow, dagster = servers.airflow, servers.dagster
    run = airflow.trigger_and_wait("e2e_reattach", timeout=300)
    [ti] = airflow.task_instances("e2e_reattach", run["dag_run_id"])
    assert run["state"] == "success", (ti, airflow.log_tail())
    assert ti["try_number"] >= 2
    dagster_runs = dagster.graphql(RUNS, {"tag": run["dag_run_id"]})["runsOrError"]["results"]
    assert [r["status"] for r in dagster_runs] == ["SUCCESS"], "one Dagster run, no duplicate"
    tags = {t["key"]: t["value"] for t in dagster_runs[0]["tags"]}
    assert tags["airlift/airflow_try_number"] == "1"
    assert (servers.markers / "slow_table_runs").read_text() == "ran\n"
    log = _task_log(airflow, run["dag_run_id"], "slow")
    assert "Re-attaching to the Dagster run(s) launched by try 1" in log or "Try 1 of this attempt already ran" in log
    assert log.count("Launched Dagster run") == 1
    print("\n--- Airflow task log of the re-attached task (both tries) ---")
    print("\n".join(line for line in log.splitlines() if "Dagster" in line or "imeout" in line)[:3000])

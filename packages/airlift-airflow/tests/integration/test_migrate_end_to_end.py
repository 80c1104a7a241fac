"""Real Airflow (2.11 or 3.3) and a real Dagster webserver + daemon (two code locations, run retries
on): migrate a task, fail it, clear it, roll it back; kill a task; a launch Dagster takes after the
client's timeout; a retry after one code location failed; deferrable; a daily partition; a whole DAG
migrated and rolled back; a run Dagster retries; the webserver stopped while a task waits; a deferred
task marked failed.

The test venv has neither airflow nor dagster: both servers are driven over HTTP. One Airflow and
one Dagster serve the whole module; the DAG runs are triggered together and checked one by one.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from airlift_protocol import (
    AIRFLOW_DAG_ID_RUN_TAG,
    AIRFLOW_RUN_ID_RUN_TAG,
    MIGRATION_DOC_MARKER,
    WHOLE_DAG_TASK_ID,
    set_dag_migrated,
    set_task_migrated,
    tasks_migrated_in_dag_doc,
)
from airlift_testing import AirflowServer, DagsterServer, repo_root, wait_until
from airlift_testing.chaos import ChaosDagster

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
DAG_ID = "e2e_pipeline"

RUNS = """query($tag: String!) { runsOrError(filter: {tags: [{key: "%s", value: $tag}]}) {
  ... on Runs { results { runId status tags { key value } assetMaterializations { assetKey { path } } } } } }""" % AIRFLOW_RUN_ID_RUN_TAG
DAG_RUNS = RUNS.replace(AIRFLOW_RUN_ID_RUN_TAG, AIRFLOW_DAG_ID_RUN_TAG)
LAUNCH_DELAY = 8.0  # the proxy holds launches this long before Dagster sees them; the operator's request timeout is 5 s


class DelayingProxy:
    """Forwards GraphQL to Dagster; holds launch mutations LAUNCH_DELAY seconds before forwarding them
    (a gateway, or a code server building the plan): Dagster creates the run after the client gave up."""

    def __init__(self, target: str) -> None:
        self.launches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "dagster-cloud-api-token")}
                if b"AirliftLaunch" in body:
                    outer.launches += 1
                    time.sleep(LAUNCH_DELAY)
                answer = requests.post(f"{target}/graphql", data=body, headers=headers, timeout=60)
                try:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except OSError:
                    pass  # the client gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _task_log(airflow: AirflowServer, run_id: str, task_id: str) -> str:
    logs = [p for p in (airflow.home / "logs").rglob("*.log") if f"task_id={task_id}" in str(p) and run_id.replace(":", "") in str(p).replace(":", "").replace("%3A", "")]
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs))


@dataclass
class Servers:
    airflow: AirflowServer
    dagster: ChaosDagster
    dags: Path
    markers: Path
    proxy: DelayingProxy
    runs: dict[str, str] = field(default_factory=dict)  # DAG id -> its triggered run

    def trigger(self, dag_id: str) -> str:
        self.runs[dag_id] = self.airflow.trigger(dag_id)
        return self.runs[dag_id]

    def wait(self, dag_id: str) -> dict[str, Any]:
        if dag_id not in self.runs:
            self.trigger(dag_id)
        return self.airflow.wait_for_run(dag_id, self.runs[dag_id], timeout=400)

    def dagster_runs(self, airflow_run_id: str) -> list[dict[str, Any]]:
        """Dagster runs of one Airflow run, oldest first, with their tags as a dict."""
        runs = self.dagster.graphql(RUNS, {"tag": airflow_run_id})["runsOrError"]["results"]
        return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in reversed(runs)]


MIGRATED_DAGS = ("e2e_kill", "e2e_slow_launch", "e2e_two_locations", "e2e_deferred", "e2e_daily", "e2e_whole",
                 "e2e_dagster_retry", "e2e_outage", "e2e_mark_failed", "e2e_custom", "e2e_params")


@pytest.fixture(scope="module")
def servers(
    airflow_server_factory: Callable[..., AirflowServer],
    dagster_server_factory: Callable[..., DagsterServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("airlift-airflow-e2e")
    markers = root / "markers"
    markers.mkdir()
    dags = root / "dags"
    shutil.copytree(HERE / "e2e_dags", dags)
    state_folder = dags / "migration_state"
    set_task_migrated(state_folder, dag_id=DAG_ID, task_id="first", migrated=False)
    set_task_migrated(state_folder, dag_id=DAG_ID, task_id="middle", migrated=True)
    set_task_migrated(state_folder, dag_id=DAG_ID, task_id="last", migrated=False)
    for dag_id, task_id in (("e2e_kill", "slow"), ("e2e_slow_launch", "via_proxy"), ("e2e_deferred", "deferred"),
                            ("e2e_two_locations", "both"), ("e2e_daily", "daily"), ("e2e_dagster_retry", "retried"),
                            ("e2e_outage", "waits_out"), ("e2e_mark_failed", "deferred_long"), ("e2e_custom", "custom"),
                            ("e2e_params", "with_params")):
        set_task_migrated(state_folder, dag_id=dag_id, task_id=task_id, migrated=True)
    set_dag_migrated(state_folder, dag_id="e2e_whole", migrated=True)

    env = {"AIRLIFT_E2E_MARKERS": str(markers)}
    dagster = dagster_server_factory(ChaosDagster, workspace_file=HERE / "workspace.yaml", extra_packages=[], extra_env=env)
    # run retries on (a run is retried when its tags ask, dagster/max_retries): the daemon reads it at start
    with (dagster.home / "dagster.yaml").open("a") as f:
        f.write("run_retries:\n  enabled: true\n  max_retries: 0\n")
    dagster.stop_daemon()
    dagster.start_daemon()
    proxy = DelayingProxy(dagster.url)
    packages = repo_root() / "packages"
    airflow = airflow_server_factory(
        dags,
        extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
        extra_env={**env, "AIRFLOW_CONN_DAGSTER_DEFAULT": dagster.url, "AIRFLOW_CONN_DAGSTER_SLOW": proxy.url},
        startup_timeout=600,  # a loaded 2-core machine
    )
    airflow.wait_for_dags([DAG_ID, *MIGRATED_DAGS])
    yield Servers(airflow=airflow, dagster=dagster, dags=dags, markers=markers, proxy=proxy)
    proxy.stop()


def _shown_migrated(airflow: AirflowServer, task_id: str) -> bool:
    """Whether Airflow's REST API shows the task as migrated: its ``doc_md`` carries the marker, or,
    on Airflow before 2.10 (no ``doc_md`` in the task list), the DAG's doc lists it as running in Dagster."""
    task = next(t for t in airflow.get(f"/dags/{DAG_ID}/tasks")["tasks"] if t["task_id"] == task_id)
    if "doc_md" in task:
        return MIGRATION_DOC_MARKER in (task["doc_md"] or "")
    return task_id in tasks_migrated_in_dag_doc(airflow.get(f"/dags/{DAG_ID}/details")["doc_md"])


def test_migrate_fail_and_roll_back(servers: Servers) -> None:
    airflow, dagster, dags, markers = servers.airflow, servers.dagster, servers.dags, servers.markers
    state_folder = dags / "migration_state"

    # the migration state is readable over REST: the middle task carries the marker
    assert _shown_migrated(airflow, "middle") and not _shown_migrated(airflow, "first")
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
    assert tags["airlift/airflow_instance"] == "e2e_airflow", "learned from the DAG asset, nothing set in Airflow"
    assert tags["airlift/airflow_max_tries"] == "0"
    assert [m["assetKey"]["path"] for m in dagster_runs[0]["assetMaterializations"]] == [["e2e", "middle_table"]]
    log = _task_log(airflow, run["dag_run_id"], "middle")
    run_link = f"{dagster.url}/runs/{dagster_runs[0]['runId']}"
    assert run_link in log
    print("\n--- Airflow task log of the proxied task (migrated) ---")
    print("\n".join(line for line in log.splitlines() if "Dagster" in line))

    # 1b. a user clears the task: the new try launches a new Dagster run (the old one is not reused)
    airflow.post(f"/dags/{DAG_ID}/clearTaskInstances", json={
        "dry_run": False, "task_ids": ["middle"], "dag_run_id": run["dag_run_id"], "only_failed": False,
        "reset_dag_runs": True})
    again = airflow.wait_for_run(DAG_ID, run["dag_run_id"], timeout=300)
    assert again["state"] == "success", airflow.log_tail()
    cleared = servers.dagster_runs(run["dag_run_id"])
    assert [(r["tags"]["airlift/airflow_try_number"], r["status"]) for r in cleared] == [("1", "SUCCESS"), ("2", "SUCCESS")]

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

    wait_until(lambda: not _shown_migrated(airflow, "middle"), timeout=180, what="Airflow to re-parse the rolled-back DAG", interval=2)
    time.sleep(2)
    back = airflow.trigger_and_wait(DAG_ID, timeout=300)
    assert back["state"] == "success"
    assert (markers / "airflow_ran_middle").read_text() == "airflow"
    assert dagster.graphql(RUNS, {"tag": back["dag_run_id"]})["runsOrError"]["results"] == []




def _ti(servers: Servers, dag_id: str) -> dict[str, Any]:
    [ti] = servers.airflow.task_instances(dag_id, servers.runs[dag_id])
    return ti


def test_killed_task_terminates_its_dagster_run(servers: Servers) -> None:
    """The task hits its execution_timeout while its Dagster run goes on: on_kill terminates the run."""
    run = servers.wait("e2e_kill")
    assert run["state"] == "failed"
    [dagster_run] = servers.dagster_runs(run["dag_run_id"])

    def canceled() -> bool:
        return servers.dagster_runs(run["dag_run_id"])[0]["status"] == "CANCELED"

    wait_until(canceled, timeout=120, what="the killed task's Dagster run to be canceled", interval=2)
    assert not (servers.markers / "slow_table_finished").exists()
    log = _task_log(servers.airflow, run["dag_run_id"], "slow")
    assert f"Task killed: asked Dagster to terminate run {dagster_run['runId']}" in log
    print("\n--- Airflow task log of the killed task ---")
    print("\n".join(line for line in log.splitlines() if "Dagster" in line or "imeout" in line)[:3000])


def test_launch_answered_late_creates_exactly_one_run(servers: Servers) -> None:
    run = servers.wait("e2e_slow_launch")
    assert run["state"] == "success", servers.airflow.log_tail()
    dagster_runs = servers.dagster_runs(run["dag_run_id"])
    assert [r["status"] for r in dagster_runs] == ["SUCCESS"], "one Dagster run for one launch"
    assert servers.proxy.launches == 1
    assert (servers.markers / "proxied_table_runs").read_text() == "ran\n"
    log = _task_log(servers.airflow, run["dag_run_id"], "via_proxy")
    assert "looking the run up by its tags" in log and "Dagster had created the run" in log


def test_retry_launches_only_the_failed_code_location(servers: Servers) -> None:
    run = servers.wait("e2e_two_locations")
    assert run["state"] == "success", servers.airflow.log_tail()
    assert _ti(servers, "e2e_two_locations")["try_number"] == 2
    seen = [(r["tags"]["airlift/airflow_try_number"], r["tags"]["airlift/dagster_code_location"], r["status"])
            for r in servers.dagster_runs(run["dag_run_id"])]
    assert sorted(seen) == [("1", "e2e_main", "SUCCESS"), ("1", "e2e_two", "FAILURE"), ("2", "e2e_two", "SUCCESS")]
    assert (servers.markers / "loc_one_runs").read_text() == "ran\n"


def test_deferrable_frees_the_worker_and_finishes_the_same(servers: Servers) -> None:
    airflow, dag_id = servers.airflow, "e2e_deferred"
    servers.trigger(dag_id)
    wait_until(lambda: _ti(servers, dag_id)["state"] in ("deferred", "success", "failed"), timeout=300,
               what="the deferred task to defer", interval=0.5)
    states = {_ti(servers, dag_id)["state"]}
    run = servers.wait(dag_id)
    assert run["state"] == "success", airflow.log_tail()
    assert "deferred" in states, "the task waited in the triggerer, not on a worker"
    [dagster_run] = servers.dagster_runs(run["dag_run_id"])
    assert dagster_run["status"] == "SUCCESS"
    log = _task_log(airflow, run["dag_run_id"], "deferred")
    link = f"{servers.dagster.url}/runs/{dagster_run['runId']}"
    assert f"Launched Dagster run {dagster_run['runId']}" in log
    assert "Deferring: the triggerer waits for Dagster run(s)" in log
    assert f"Dagster run {dagster_run['runId']} succeeded: {link}" in log
    triggerer = log + (airflow.home / "standalone.log").read_text(errors="replace")
    assert "Dagster run(s) ended or the wait stopped" in triggerer
    print("\n--- Airflow task log of the deferred migrated task ---")
    print("\n".join(line for line in log.splitlines() if "Dagster" in line or "efer" in line or "trigger" in line)[:4000])


def test_daily_partitioned_asset_gets_the_run_partition(servers: Servers) -> None:
    airflow = servers.airflow
    airflow.unpause("e2e_daily")
    created = airflow.post("/dags/e2e_daily/dagRuns", json={"logical_date": "2024-03-05T00:00:00Z", "conf": {}})
    run = airflow.wait_for_run("e2e_daily", created["dag_run_id"], timeout=400)
    assert run["state"] == "success", airflow.log_tail()
    expected = str(run["data_interval_start"])[:10]
    [dagster_run] = servers.dagster_runs(run["dag_run_id"])
    assert dagster_run["tags"]["dagster/partition"] == expected
    # (unpausing the DAG also scheduled its latest interval: that run built its own partition)
    assert (servers.markers / f"daily_partition_{expected}").read_text() == dagster_run["runId"]
    print(f"\nAirflow run {run['dag_run_id']} (data interval start {run['data_interval_start']}) -> partition {expected}")


def test_whole_dag_migration_and_rollback(servers: Servers) -> None:
    airflow, dag_id = servers.airflow, "e2e_whole"
    run = servers.wait(dag_id)
    assert run["state"] == "success", airflow.log_tail()
    assert [t["task_id"] for t in airflow.task_instances(dag_id, run["dag_run_id"])] == [WHOLE_DAG_TASK_ID]
    [dagster_run] = servers.dagster_runs(run["dag_run_id"])
    assert [m["assetKey"]["path"] for m in dagster_run["assetMaterializations"]] == [["e2e", "whole_table"]]
    assert not (servers.markers / "airflow_ran_whole").exists()
    # roll back: the original tasks are back after a re-parse
    set_dag_migrated(servers.dags / "migration_state", dag_id=dag_id, migrated=False)
    airflow.reparse(servers.dags / "e2e_shapes.py")
    wait_until(lambda: {t["task_id"] for t in airflow.get(f"/dags/{dag_id}/tasks")["tasks"]} == {"extract", "load"},
               timeout=180, what="the rolled-back DAG's tasks", interval=2)
    back = airflow.trigger_and_wait(dag_id, timeout=400)
    assert back["state"] == "success"
    assert (servers.markers / "airflow_ran_whole").read_text() == "airflow"
    assert servers.dagster_runs(back["dag_run_id"]) == []


@pytest.mark.extended  # minutes each on a loaded 2-core machine
def test_operator_factory_partition_hook_and_untagged_asset_keys(servers: Servers) -> None:
    airflow = servers.airflow
    airflow.unpause("e2e_custom")
    created = airflow.post("/dags/e2e_custom/dagRuns", json={"logical_date": "2024-03-05T00:00:00Z", "conf": {}})
    run = airflow.wait_for_run("e2e_custom", created["dag_run_id"], timeout=400)
    assert run["state"] == "success", airflow.log_tail()
    [dagster_run] = servers.dagster_runs(run["dag_run_id"])
    print(f"\nDagster run of the factory-built operator: partition {dagster_run['tags'].get('dagster/partition')}, "
          f"tag e2e/built_by={dagster_run['tags'].get('e2e/built_by')}, assets {dagster_run['assetMaterializations']}")
    assert dagster_run["tags"]["dagster/partition"] == "2024-03-01", "the get_partition_key override chose it"
    assert dagster_run["tags"]["e2e/built_by"] == "factory:custom", "the operator the factory built ran"
    assert [m["assetKey"]["path"] for m in dagster_run["assetMaterializations"]] == [["e2e", "custom_table"]]
    assert (servers.markers / "custom_partition_2024-03-01").read_text() == dagster_run["runId"]


@pytest.mark.extended  # minutes each on a loaded 2-core machine
def test_params_and_conf_reach_the_dagster_run_as_config_and_tags(servers: Servers) -> None:
    """The DAG's params {region: us, limit: 100}, the run's conf {region: eu}: the asset's Config gets
    region=eu, limit=100, and the run carries them as tags."""
    airflow = servers.airflow
    run = airflow.trigger_and_wait("e2e_params", conf={"region": "eu"}, timeout=400)
    assert run["state"] == "success", airflow.log_tail()
    [dagster_run] = servers.dagster_runs(run["dag_run_id"])
    params = {k: v for k, v in dagster_run["tags"].items() if k.startswith("airlift/airflow_param.")}
    print(f"\nDagster run {dagster_run['runId']} of e2e_params: config as the asset saw it "
          f"{(servers.markers / 'params').read_text()!r}, tags {params}")
    assert (servers.markers / "params").read_text() == f"eu 100 {dagster_run['runId']}"
    assert params == {"airlift/airflow_param.region": "eu", "airlift/airflow_param.limit": "100"}


@pytest.mark.extended  # minutes each on a loaded 2-core machine
def test_a_run_dagster_retries_counts_for_the_task(servers: Servers) -> None:
    """The run fails once; Dagster retries it (run tag dagster/max_retries=1): the Airflow task succeeds."""
    run = servers.wait("e2e_dagster_retry")
    assert run["state"] == "success", servers.airflow.log_tail()
    first, retry = servers.dagster_runs(run["dag_run_id"])
    assert (first["status"], retry["status"]) == ("FAILURE", "SUCCESS")
    assert retry["tags"]["dagster/parent_run_id"] == first["runId"]
    assert retry["tags"]["airlift/airflow_try_number"] == "1", "Dagster's retry carries the try's tags"
    assert (servers.markers / "retried_table_runs").read_text() == "ran\nran\n"
    log = _task_log(servers.airflow, run["dag_run_id"], "retried")
    assert f"Dagster run {first['runId']} failed and Dagster retries it as run {retry['runId']}" in log
    assert f"Dagster run {retry['runId']} succeeded" in log
    print("\n--- Airflow task log of the task whose Dagster run Dagster retried ---")
    print("\n".join(line for line in log.splitlines() if "Dagster" in line)[:3000])


@pytest.mark.extended  # minutes each on a loaded 2-core machine
def test_deferred_task_marked_failed_stops_its_run(servers: Servers) -> None:
    """Airflow 3 calls the trigger's on_kill: the run ends canceled. Airflow 2 does not: the run goes on
    until the task's next try, here a clear, which terminates it and launches a new run."""
    airflow, dag_id = servers.airflow, "e2e_mark_failed"
    run_id = servers.trigger(dag_id)
    wait_until(lambda: _ti(servers, dag_id)["state"] == "deferred" and servers.dagster_runs(run_id), timeout=300,
               what="the task to defer with its Dagster run", interval=1.0)
    [first] = servers.dagster_runs(run_id)
    started = time.monotonic()
    body = {"new_state": "failed"} if airflow.generation >= 3 else {"new_state": "failed", "dry_run": False}
    airflow.patch(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/deferred_long", json=body)
    if airflow.generation >= 3:
        wait_until(lambda: servers.dagster_runs(run_id)[0]["status"] == "CANCELED", timeout=120,
                   what="the marked-failed task's Dagster run to be canceled", interval=1.0)
        print(f"\nAirflow 3: run {first['runId']} canceled {time.monotonic() - started:.0f}s after mark failed")
        return
    time.sleep(10)
    assert servers.dagster_runs(run_id)[0]["status"] in ("STARTED", "STARTING", "QUEUED"), "Airflow 2 tells no trigger"
    airflow.post(f"/dags/{dag_id}/clearTaskInstances", json={
        "dry_run": False, "task_ids": ["deferred_long"], "dag_run_id": run_id, "only_failed": False, "reset_dag_runs": True})
    wait_until(lambda: len(servers.dagster_runs(run_id)) == 2, timeout=300, what="the cleared try's run", interval=1.0)
    assert servers.dagster_runs(run_id)[0]["status"] in ("CANCELING", "CANCELED")
    (servers.markers / "release_mark_failed").write_text("1")
    assert servers.wait(dag_id)["state"] == "success"
    assert [r["status"] for r in servers.dagster_runs(run_id)] == ["CANCELED", "SUCCESS"]
    assert "of an earlier attempt of this task (cleared since) was still in flight: terminated" in \
        _task_log(airflow, run_id, "deferred_long")


@pytest.mark.extended  # minutes each on a loaded 2-core machine
def test_webserver_stopped_while_a_task_waits(servers: Servers) -> None:
    """The Dagster webserver is down 30 s while a migrated task waits: the task succeeds, one run."""
    dag_id = "e2e_outage"
    run_id = servers.trigger(dag_id)
    wait_until(lambda: (servers.markers / "outage_table_runs").exists(), timeout=300,
               what="the task's Dagster run to start", interval=1.0)
    servers.dagster.restart_webserver(down_seconds=30)
    (servers.markers / "outage_over").write_text("1")
    run = servers.wait(dag_id)
    assert run["state"] == "success", servers.airflow.log_tail()
    assert [r["status"] for r in servers.dagster_runs(run_id)] == ["SUCCESS"]
    assert (servers.markers / "outage_table_runs").read_text() == "ran\n"
    log = _task_log(servers.airflow, run_id, "waits_out")
    assert "cannot be reached" in log and "answers again after" in log
    print("\n--- Airflow task log of the task that waited through the outage ---")
    print("\n".join(line for line in log.splitlines() if "Dagster" in line)[:3000])


def _run_index(airflow: AirflowServer, action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert airflow.venv is not None
    return subprocess.run([str(airflow.venv / "bin" / "airlift-airflow"), "run-index", action], env=env, cwd=airflow.home,
                          capture_output=True, text=True, timeout=600)


def _index_in_database(airflow: AirflowServer) -> str:
    """'valid', 'invalid' or '' (absent), read from the database itself."""
    if airflow.postgres is not None:
        return airflow.postgres.psql("airflow", "SELECT CASE WHEN indisvalid THEN 'valid' ELSE 'invalid' END FROM pg_index "
                                                "WHERE indexrelid = to_regclass('airlift_dag_run_updated_at')").strip()
    with sqlite3.connect(airflow.home / "airflow.db", timeout=60) as db:
        found = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'dag_run' "
                           "AND name = 'airlift_dag_run_updated_at'").fetchall()
    return "valid" if found else ""


def test_the_sensor_index_is_built_checked_and_dropped_where_airflow_runs(servers: Servers) -> None:
    """`airlift-airflow run-index` from Airflow's own environment, Airflow running: PostgreSQL in the production
    shape (a concurrent build; an interrupted one found and built again), SQLite otherwise; the database's
    password (one the server ignores) never printed; the runs list the sensor asks still answers."""
    airflow = servers.airflow
    env = airflow.env()
    secret = "pw-SENTINEL-7c1"
    if airflow.postgres is not None:  # trust authentication: a password is accepted and ignored
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("://airlift@", f"://airlift:{secret}@")
        assert secret in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    said: list[str] = []

    def run(action: str, code: int) -> str:
        done = _run_index(airflow, action, env)
        said.append(done.stdout + done.stderr)
        assert done.returncode == code, f"run-index {action}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    # each call imports Airflow (5-8 s here): the command's other answers are the unit tests' (test_run_index.py)
    assert "No index on dag_run (updated_at)" in run("check", 1)
    built = run("create", 0)
    assert ("CREATE INDEX CONCURRENTLY IF NOT EXISTS" if airflow.postgres else "CREATE INDEX IF NOT EXISTS") in built
    assert _index_in_database(airflow) == "valid"
    if airflow.postgres is not None:  # what an interrupted CREATE INDEX CONCURRENTLY leaves
        airflow.postgres.psql("airflow", "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'airlift_dag_run_updated_at'::regclass")
        assert "INVALID" in run("check", 1)
        rebuilt = run("create", 0)
        assert "is invalid (an interrupted build); dropping it" in rebuilt and "DROP INDEX CONCURRENTLY" in rebuilt
        assert _index_in_database(airflow) == "valid"
    since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    listed = airflow.get("/dags/~/dagRuns", params={"updated_at_gte": since, "limit": 1})
    assert isinstance(listed["total_entries"], int)  # Airflow answers the sensor's filter with the index there
    assert "DROP INDEX" in run("drop", 0)
    assert _index_in_database(airflow) == ""
    assert not any(secret in text for text in said)

"""``scripts/tutorial.py --push`` as a user runs it (real Airflow 2.11 or 3.3 and a real Dagster): a triggered
run's DAG asset reaches Dagster through push (a report, not a sensor event), and two quick Ctrl-C stop the
push relay the tasks started, which runs in a session of its own, outside every server's process group.
Extended: a second start of the whole tutorial (``tests/test_tutorial_script.py`` walks the polling path)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airlift_protocol.tags import AIRFLOW_EVENT_TAG
from airlift_testing import AirflowServer, free_port, repo_root, wait_until
from airlift_testing.procs import group_alive
from airlift_testing.tutorial import (
    load_tutorial_script,
    output_of,
    start_tutorial,
    wait_for_banner,
)

pytestmark = [pytest.mark.integration, pytest.mark.extended]
ROOT = repo_root()
DAG_ID = "rebuild_customers_list"
MATERIALIZATIONS = """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations(limit: 20) { tags { key } metadataEntries { label } } } } }"""


@pytest.fixture
def tutorial(airflow_version: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    ports = {"airflow": free_port(), "dagster": free_port()}
    state_dir = tmp_path / "state"
    log = tmp_path / "tutorial.out"
    process = start_tutorial("--push", "--airflow", airflow_version.split(".")[0], "--airflow-port", str(ports["airflow"]),
                             "--dagster-port", str(ports["dagster"]), "--state-dir", str(state_dir), log=log)
    try:
        yield {"process": process, "ports": ports, "state_dir": state_dir, "log": log}
    finally:
        if process.poll() is None:  # the test failed half-way: leave nothing behind
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
        start_tutorial("--stop", "--state-dir", str(state_dir), log=tmp_path / "stop.out").wait(timeout=300)


def test_push_delivers_and_ctrl_c_stops_the_relay(tutorial: dict[str, Any], airflow_version: str) -> None:
    process: subprocess.Popen[bytes] = tutorial["process"]
    log: Path = tutorial["log"]
    assert "within seconds of the task (push mode" in wait_for_banner(process, log)
    script = load_tutorial_script()
    state = json.loads((tutorial["state_dir"] / "tutorial.json").read_text())
    groups = [g["pgid"] for g in state["process_groups"]]

    airflow = AirflowServer(version=airflow_version, dags_folder=ROOT / "examples" / "tutorial-example" / "airflow_dags",
                            home=log.parent / "client-only", port=tutorial["ports"]["airflow"])
    run_id = airflow.trigger(DAG_ID, unpause=False)
    assert airflow.wait_for_run(DAG_ID, run_id, timeout=600)["state"] == "success", output_of(log)

    dagster_url = f"http://127.0.0.1:{tutorial['ports']['dagster']}"

    def pushed() -> list[dict[str, Any]] | None:
        response = requests.post(f"{dagster_url}/graphql", timeout=30, json={
            "query": MATERIALIZATIONS, "variables": {"path": ["airflow_instance_one", "dag", DAG_ID]}})
        events = response.json()["data"]["assetOrError"].get("assetMaterializations") or []
        # Dagster's report endpoints take no tags: push's identity is in the metadata only, the sensor's in both
        return [e for e in events if AIRFLOW_EVENT_TAG not in {t["key"] for t in e["tags"]}
                and any(m["label"] == AIRFLOW_EVENT_TAG for m in e["metadataEntries"])] or None

    wait_until(pushed, timeout=300, what="the DAG asset's materialization pushed to Dagster", interval=2.0)
    relays = script.tutorial_relays(tutorial["state_dir"])
    assert relays, f"no push relay of the tutorial runs:\n{output_of(log)}"
    assert not [pid for pid in relays if os.getpgid(pid) in groups]  # outside the servers' process groups

    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=180) == 0, output_of(log)
    output = output_of(log)
    assert all(f"Stopping the push relay (pid {pid})" in output for pid in relays), output
    assert script.tutorial_relays(tutorial["state_dir"]) == [], output
    assert not [pgid for pgid in groups if group_alive(pgid)], output

"""``scripts/tutorial.py`` as a user runs it: ``uv run`` in a terminal's process group, both servers up,
a triggered DAG run materialized in Dagster, then two quick Ctrl-C that leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airlift_testing import AirflowServer, free_port, wait_until
from airlift_testing.procs import group_alive
from airlift_testing.tutorial import output_of, start_tutorial, wait_for_banner

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "rebuild_customers_list"
MATERIALIZATIONS = """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations(limit: 5) { runOrError { __typename } metadataEntries { label
    ... on UrlMetadataEntry { url } } } } } }"""


SENSOR_TICKS = """{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name
  sensorState { ticks(limit: 100) { status skipReason runIds } } } } } } }"""


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def tutorial(airflow_version: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    ports = {"airflow": free_port(), "dagster": free_port()}
    state_dir = tmp_path / "state"
    log = tmp_path / "tutorial.out"
    process = start_tutorial("--airflow", airflow_version.split(".")[0], "--airflow-port", str(ports["airflow"]),
                             "--dagster-port", str(ports["dagster"]), "--state-dir", str(state_dir), log=log)
    world = {"process": process, "ports": ports, "state_file": state_dir / "tutorial.json", "log": log, "groups": []}
    try:
        yield world
    finally:
        if process.poll() is None:  # the test failed half-way: do not leave servers behind
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
        for pgid in world["groups"]:
            if group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)


def test_start_trigger_materialize_then_two_ctrl_c_leave_nothing(tutorial: dict[str, Any], airflow_version: str) -> None:
    process: subprocess.Popen[bytes] = tutorial["process"]
    log: Path = tutorial["log"]

    output = wait_for_banner(process, log)
    airflow_url = f"http://127.0.0.1:{tutorial['ports']['airflow']}"
    dagster_url = f"http://127.0.0.1:{tutorial['ports']['dagster']}"
    assert f"{airflow_url}/dags/{DAG_ID}" in output and f"{dagster_url}/asset-groups" in output, output
    state = json.loads(tutorial["state_file"].read_text())
    tutorial["groups"] = [g["pgid"] for g in state["process_groups"]]
    assert [g["name"] for g in state["process_groups"]] == ["Airflow", "Dagster webserver", "Dagster daemon"], state

    # Trigger as a user would (the tutorial unpaused the DAG) and wait for Airflow to finish the run.
    airflow = AirflowServer(version=airflow_version, dags_folder=ROOT / "examples" / "tutorial-example" / "airflow_dags",
                            home=log.parent / "client-only", port=tutorial["ports"]["airflow"])
    assert not any(d["is_paused"] for d in airflow.dags() if d["dag_id"] == DAG_ID)
    run_id = airflow.trigger(DAG_ID, unpause=False)
    run = airflow.wait_for_run(DAG_ID, run_id, timeout=600)
    assert run["state"] == "success", output_of(log)

    def materialized() -> list[dict[str, Any]] | None:
        response = requests.post(f"{dagster_url}/graphql", timeout=30, json={
            "query": MATERIALIZATIONS, "variables": {"path": ["airflow_instance_one", "dag", DAG_ID]}})
        events = response.json()["data"]["assetOrError"].get("assetMaterializations") or []
        return events or None

    events = wait_until(materialized, timeout=300, what="the DAG asset's materialization in Dagster", interval=3.0)
    links = [e.get("url", "") for ev in events for e in ev["metadataEntries"] if e["label"] == "Airflow run"]
    assert links and all(link.startswith(airflow_url) for link in links), links  # links match the banner's host

    # The tick that recorded the materialization says so in the sensor's tick history. Dagster 1.12-1.13
    # marks a tick SUCCESS only when it launched a run (daemon/sensor.py: `elif context.run_count`); a tick
    # that only recorded events is SKIPPED, and its reason (the UI's tooltip) is what tells it apart.
    sensors = [s for node in requests.post(f"{dagster_url}/graphql", timeout=30, json={"query": SENSOR_TICKS}).json()[
        "data"]["repositoriesOrError"]["nodes"] for s in node["sensors"] if s["name"] == "airflow_instance_one__airflow_sensor"]
    ticks = sensors[0]["sensorState"]["ticks"] if sensors else []
    recorded = [t for t in ticks if "asset materialization" in (t["skipReason"] or "")]
    assert recorded and all(t["status"] == "SKIPPED" and not t["runIds"] for t in recorded), ticks
    assert all(t["skipReason"].startswith("Recorded ") and t["skipReason"].endswith("from Airflow (no Dagster run needed).")
               for t in recorded), recorded
    assert not [t for t in ticks if t["status"] == "SKIPPED" and (t["skipReason"] or "").startswith("Sensor function returned")], ticks

    # Two quick Ctrl-C to the terminal's process group (uv and the script both get them).
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=180) == 0, output_of(log)
    assert not [pgid for pgid in tutorial["groups"] if group_alive(pgid)], output_of(log)
    assert not _listening(tutorial["ports"]["airflow"]) and not _listening(tutorial["ports"]["dagster"])
    assert not tutorial["state_file"].exists()
    assert "Stopping Dagster and Airflow" in output_of(log)

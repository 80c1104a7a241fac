"""Push mode against real Airflow (2.11 or 3.3) and a real Dagster webserver + daemon, with no
instance name set on the Airflow side (push and the operator learn it from Dagster): the listener
reports a run's materializations with the sensor stopped, and counts them in the machine's push
status file; with both on, exactly one materialization per task try and DAG run; with Dagster down
during a run, the Airflow tasks are unaffected, push counts what it could not deliver, and the
sensor delivers everything later, nothing twice; the migrated task is reported once (by its Dagster
run). One Airflow and one Dagster for the module; the test venv has neither installed.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airlift_protocol.push_status import (
    LOG_FILE_NAME,
    STATUS_FILE_NAME,
    PushStatus,
    PushStatusError,
    load_push_status,
)
from airlift_protocol.tags import AIRFLOW_EVENT_TAG, SENSOR_SETTLE_METADATA
from airlift_testing import AirflowServer, DagsterServer, repo_root, wait_until
from airlift_testing.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.extended]
HERE = Path(__file__).parent / "push"
DAG_ID = "push_dag"
INSTANCE = "push_e2e"
LOCATION = "push_e2e_defs"
SENSOR = f"{INSTANCE}__airflow_sensor"
PLAIN_DAG_ID = "push_plain"  # no migrated task: it runs while Dagster is down
ASSETS = {DAG_ID: (("push", "a"), ("push", "b"), (INSTANCE, "dag", DAG_ID)),
          PLAIN_DAG_ID: (("push", "x"), (INSTANCE, "dag", PLAIN_DAG_ID))}
MIGRATED = ("push", "c")

MATERIALIZATIONS = """
query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename ... on Asset {
  assetMaterializations(limit: 200) { runId tags { key value }
    metadataEntries { label ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } }
"""
SENSOR_TICKS = """
query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { __typename ... on Sensor {
  sensorState { status ticks(limit: 5) { timestamp status error { message } } } } } }
"""
START_SENSOR = """
mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) { __typename
  ... on Sensor { sensorState { status } } ... on PythonError { message } } }
"""
DAG_ASSET_SETTLE = """
query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { metadataEntries { label ... on FloatMetadataEntry { floatValue } } } }
"""
SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": SENSOR}


@dataclass(frozen=True)
class Event:
    airflow_run_id: str
    try_number: int
    identity: str | None
    dagster_run_id: str
    by_sensor: bool  # the sensor writes the identity in tags too; Dagster's report endpoints take none


@dataclass
class Servers:
    airflow: AirflowServer
    dagster: DagsterServer
    tmp: Path  # the Airflow processes' TMPDIR: the push relay's folder is in it
    runs: dict[str, list[str]] = field(default_factory=lambda: {DAG_ID: [], PLAIN_DAG_ID: []})

    def push_status(self) -> PushStatus:
        try:
            return load_push_status(self.tmp / f"airlift-push-{os.getuid()}" / STATUS_FILE_NAME)
        except PushStatusError:
            return PushStatus()

    def events(self, path: tuple[str, ...]) -> list[Event]:
        data = self.dagster.graphql(MATERIALIZATIONS, {"key": {"path": list(path)}})["assetOrError"]
        out = []
        for m in data.get("assetMaterializations") or []:
            meta = {e["label"]: e.get("text", e.get("intValue")) for e in m["metadataEntries"]}
            tags = {t["key"]: t["value"] for t in m["tags"]}
            out.append(Event(str(meta.get("Airflow run id", tags.get("airlift/airflow_run_id", ""))), int(meta.get("Try number") or 0),
                             meta.get(AIRFLOW_EVENT_TAG), m["runId"], AIRFLOW_EVENT_TAG in tags))
        return out

    def of_run(self, path: tuple[str, ...], airflow_run_id: str) -> list[Event]:
        return [e for e in self.events(path) if e.airflow_run_id == airflow_run_id]

    def wait_for_events(self, dag_id: str, airflow_run_id: str, *, timeout: float) -> None:
        wait_until(lambda: all(self.of_run(p, airflow_run_id) for p in ASSETS[dag_id]), timeout=timeout,
                   what=f"materializations of Airflow run {airflow_run_id}", interval=1.0)

    def sensor_ticked_after(self, when: float) -> bool:
        data = self.dagster.graphql(SENSOR_TICKS, {"selector": SELECTOR})["sensorOrError"]
        return any(t["timestamp"] > when and t["status"] in ("SUCCESS", "SKIPPED") for t in data["sensorState"]["ticks"])

    def dagster_run_of_migrated_task(self, airflow_run_id: str) -> list[Event]:
        runs = self.dagster.graphql(
            'query($v: String!) { runsOrError(filter: {tags: [{key: "airlift/airflow_run_id", value: $v}]}) '
            '{ ... on Runs { results { runId } } } }', {"v": airflow_run_id})["runsOrError"]["results"]
        ids = {r["runId"] for r in runs}
        return [e for e in self.events(MIGRATED) if e.dagster_run_id in ids or e.airflow_run_id == airflow_run_id]


@pytest.fixture(scope="module")
def servers(
    airflow_server_factory: Callable[..., AirflowServer],
    dagster_server_factory: Callable[..., DagsterServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Servers:
    dagster_port, airflow_port = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("push-tmp")
    packages = repo_root() / "packages"
    # Airflow first (the Dagster code location reads it when it loads); Dagster's port is chosen now.
    airflow = airflow_server_factory(
        HERE / "dags",
        port=airflow_port,
        startup_timeout=600.0,  # Airflow 2's webserver took over 240 s to start on a loaded 2-core machine
        extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
        extra_env={
            "AIRFLOW_CONN_DAGSTER_DEFAULT": f"http://127.0.0.1:{dagster_port}",
            "AIRFLOW__AIRLIFT__PUSH_ENABLED": "True",
            "AIRFLOW__AIRLIFT__RELAY_IDLE_SECONDS": "20",  # the push relay exits soon after the servers
            "TMPDIR": str(tmp),
        },
    )
    airflow.wait_for_dags([DAG_ID, PLAIN_DAG_ID])
    dagster = dagster_server_factory(workspace_file=HERE / "workspace.yaml", port=dagster_port,
                                     extra_env={"AIRLIFT_PUSH_AIRFLOW_URL": airflow.url})
    return Servers(airflow=airflow, dagster=dagster, tmp=tmp)


def _run(servers: Servers, dag_id: str = DAG_ID) -> str:
    run = servers.airflow.trigger_and_wait(dag_id, timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in servers.airflow.task_instances(dag_id, run["dag_run_id"])}
    assert run["state"] == "success" and set(states.values()) == {"success"}, (states, servers.airflow.log_tail())
    servers.runs[dag_id].append(run["dag_run_id"])
    return str(run["dag_run_id"])


def _missed(status: PushStatus) -> int:
    return sum(n for name, n in status.counters.items() if name != "delivered")


def _exactly_once(servers: Servers) -> None:
    """Every asset of every run so far: one materialization per task try (DAG asset: per run)."""
    for dag_id, run_ids in servers.runs.items():
        for path in ASSETS[dag_id]:
            counts = Counter((e.airflow_run_id, e.try_number) for e in servers.events(path) if e.airflow_run_id in run_ids)
            assert sorted(counts) == sorted((r, 0 if path[1] == "dag" else 1) for r in run_ids), (path, counts)
            assert all(n == 1 for n in counts.values()), (path, counts)
    for run_id in servers.runs[DAG_ID]:  # the migrated task: its Dagster run's materialization only
        migrated = servers.dagster_run_of_migrated_task(run_id)
        assert len(migrated) == 1 and migrated[0].dagster_run_id and migrated[0].identity is None, migrated


def test_push_delivers_with_the_sensor_stopped(servers: Servers) -> None:
    run_id = _run(servers)
    servers.wait_for_events(DAG_ID, run_id, timeout=60)
    for path in ASSETS[DAG_ID]:
        (event,) = servers.of_run(path, run_id)
        assert event.identity and not event.by_sensor and event.dagster_run_id == ""  # runless, pushed
    _exactly_once(servers)
    # tasks a and b (the relay) and the DAG run (the scheduler), counted on this machine
    wait_until(lambda: servers.push_status().counters["delivered"] >= 3, timeout=30, what="the push status file", interval=1.0)
    status = servers.push_status()
    assert status.counters["unresolved_instance_name"] == 0 and not [p for p in status.problems if p.actionable], status
    # the relay read the sensor's settle (9.5 s) from the DAG asset, with the index, and stops 2 s before it
    node = servers.dagster.graphql(DAG_ASSET_SETTLE, {"keys": [{"path": [INSTANCE, "dag", DAG_ID]}]})["assetNodes"][0]
    assert {e["label"]: e.get("floatValue") for e in node["metadataEntries"]}[SENSOR_SETTLE_METADATA] == 9.5
    relay_log = (servers.tmp / f"airlift-push-{os.getuid()}" / LOG_FILE_NAME).read_text()
    assert "settle is 9.5s: push sends reports at most 7.5s after the Airflow event" in relay_log, relay_log[-2000:]
    assert "publishes no sensor settle" not in relay_log


def test_push_and_sensor_together_deliver_each_try_once(servers: Servers) -> None:
    started = servers.dagster.graphql(START_SENSOR, {"selector": SELECTOR})["startSensor"]
    assert started["__typename"] == "Sensor", started
    run_id = _run(servers)
    servers.wait_for_events(DAG_ID, run_id, timeout=60)
    done = time.time()
    # the sensor has read the run's rows (settle 9.5 s) and skipped what push delivered
    wait_until(lambda: servers.sensor_ticked_after(done + 12), timeout=120, what="a sensor tick after the run settled", interval=2.0)
    _exactly_once(servers)
    assert not any(e.by_sensor for p in ASSETS[DAG_ID] for e in servers.of_run(p, run_id))


def test_dagster_down_leaves_tasks_alone_and_the_sensor_catches_up(servers: Servers) -> None:
    missed_before = _missed(servers.push_status())
    servers.dagster.stop()
    try:
        began = time.monotonic()
        run_id = _run(servers, PLAIN_DAG_ID)
        print(f"\nAirflow run with Dagster down: {time.monotonic() - began:.1f}s")
        # the task's and the run's reports: counted as not delivered once push gave up on them
        wait_until(lambda: _missed(servers.push_status()) >= missed_before + 2, timeout=60, what="push's failures counted",
                   interval=1.0)
    finally:
        servers.dagster.start()
    servers.wait_for_events(PLAIN_DAG_ID, run_id, timeout=180)
    for path in ASSETS[PLAIN_DAG_ID]:
        (event,) = servers.of_run(path, run_id)
        assert event.by_sensor  # push gave up; the sensor delivered
    done = time.time()
    wait_until(lambda: servers.sensor_ticked_after(done + 1), timeout=120, what="one more sensor tick", interval=2.0)
    _exactly_once(servers)

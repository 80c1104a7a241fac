"""Walk the whole user guide on real Airflow and real Dagster: peer, observe, migrate task by task,
roll one task back. Dagster's sensor is evaluated in this process; migrated tasks run in a real
Dagster webserver + daemon."""

from __future__ import annotations

import importlib
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from dagster import AssetMaterialization, DagsterInstance, Definitions, build_sensor_context

from airlift_protocol import AIRFLOW_RUN_ID_RUN_TAG, MIGRATION_DOC_MARKER, set_task_migrated
from airlift_testing import AirflowServer, DagsterServer, wait_until

pytestmark = pytest.mark.integration
DAG_ID = "rebuild_customers_list"
TASKS = ["load_raw_customers", "run_dbt_model", "export_customers"]
DBT_ASSETS = {"raw_data/raw_orders", "raw_data/raw_payments", "stg_customers", "stg_orders", "stg_payments", "customers"}
MATERIALIZATIONS = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename ... on Asset {
  assetMaterializations(limit: 500) { runId metadataEntries { label ... on TextMetadataEntry { text } } } } } }"""
SENSOR = {"repositoryLocationName": "migrate.py", "repositoryName": "__repository__", "sensorName": "airflow_instance_one__airflow_sensor"}
RUN_TAGS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { tags { key value } } } }"
RUNS = """query($tag: String!) { runsOrError(filter: {tags: [{key: "%s", value: $tag}]}) {
  ... on Runs { results { runId status tags { key value } assetMaterializations { assetKey { path } } } } } }""" % AIRFLOW_RUN_ID_RUN_TAG


@pytest.fixture(scope="module", autouse=True)
def _tutorial_env(world: dict[str, Any]) -> None:
    """The sensor runs in this process and imports the tutorial's definitions, which read these."""
    os.environ.update(world["env"])
    os.environ["TUTORIAL_AIRFLOW_URL"] = world["airflow"].url


def _defs(step: str) -> Definitions:
    module = importlib.import_module(f"tutorial_example.dagster_defs.{step}")
    module = importlib.reload(module)
    return module.defs  # type: ignore[no-any-return]


def _tick(defs: Definitions, instance: DagsterInstance, cursor: str | None) -> tuple[list[AssetMaterialization], str | None]:
    sensor = defs.resolve_sensor_def(SENSOR["sensorName"])
    result = sensor(build_sensor_context(instance=instance, definitions=defs, cursor=cursor))
    return [e for e in result.asset_events if isinstance(e, AssetMaterialization)], result.cursor


def _tick_until(defs: Definitions, instance: DagsterInstance, cursor: str | None, *, want: int,
                timeout: float = 120.0) -> tuple[list[AssetMaterialization], str | None]:
    """Tick until ``want`` materializations arrived (the sensor leaves rows changed in its last
    ``settle`` seconds to the next tick), then once more to prove nothing else comes."""
    events: list[AssetMaterialization] = []
    deadline = time.monotonic() + timeout
    while len(events) < want and time.monotonic() < deadline:
        new, cursor = _tick(defs, instance, cursor)
        for event in new:  # what a daemon would store before the next tick
            instance.report_runless_asset_event(event)
        events += new
        if len(events) < want:
            time.sleep(3)
    more, cursor = _tick(defs, instance, cursor)
    return events + more, cursor


def test_peer_then_observe(world: dict[str, Any]) -> None:
    airflow: AirflowServer = world["airflow"]
    with DagsterInstance.ephemeral() as instance:
        peer = _defs("peer")
        _, cursor = _tick(peer, instance, None)
        run = airflow.trigger_and_wait(DAG_ID, timeout=400)
        assert run["state"] == "success", airflow.log_tail()
        events, cursor = _tick_until(peer, instance, cursor, want=1)
        assert [e.asset_key.to_user_string() for e in events] == [f"airflow_instance_one/dag/{DAG_ID}"]
        assert events[0].metadata["Airflow run"].value.startswith(airflow.url)

    for step in ("observe", "observe_with_factory"):
        with DagsterInstance.ephemeral() as instance:
            observe = _defs(step)
            _, cursor = _tick(observe, instance, None)
            run = airflow.trigger_and_wait(DAG_ID, timeout=400)
            assert run["state"] == "success"
            events, _ = _tick_until(observe, instance, cursor, want=len(DBT_ASSETS) + 3)
            counts = Counter(e.asset_key.to_user_string() for e in events)
            assert counts == Counter({"raw_data/raw_customers": 1, **{k: 1 for k in DBT_ASSETS}, "customers_csv": 1,
                                      f"airflow_instance_one/dag/{DAG_ID}": 1}), step
            order = [e.asset_key.to_user_string() for e in events]
            assert order.index("raw_data/raw_customers") < order.index("stg_customers") < order.index("customers") < order.index("customers_csv")
            csv_event = next(e for e in events if e.asset_key.to_user_string() == "customers_csv")
            assert "export_customers" in csv_event.metadata["Airflow task log"].value
    assert (world["tmp"] / "export" / "customers.csv").read_text().count("\n") == 51


def test_migrate_task_by_task_and_roll_back(world: dict[str, Any], tutorial_dagster: Callable[..., DagsterServer]) -> None:
    airflow: AirflowServer = world["airflow"]
    dagster = tutorial_dagster("migrate")
    state_dir = world["dags"] / "migration_state"

    def reparse(task_id: str, migrated: bool) -> None:
        set_task_migrated(state_dir, dag_id=DAG_ID, task_id=task_id, migrated=migrated)
        (world["dags"] / "rebuild_customers_list.py").touch()

        def parsed() -> bool:
            task = next(t for t in airflow.get(f"/dags/{DAG_ID}/tasks")["tasks"] if t["task_id"] == task_id)
            return (MIGRATION_DOC_MARKER in (task.get("doc_md") or "")) == migrated

        wait_until(parsed, timeout=180, what=f"Airflow to re-parse with {task_id} migrated={migrated}", interval=2)

    migrated_so_far: list[str] = []
    airflow_runs: list[str] = []
    for task_id in TASKS:
        reparse(task_id, True)
        migrated_so_far.append(task_id)
        run = airflow.trigger_and_wait(DAG_ID, timeout=600)
        assert run["state"] == "success", airflow.log_tail()
        airflow_runs.append(run["dag_run_id"])
        dagster_runs = dagster.graphql(RUNS, {"tag": run["dag_run_id"]})["runsOrError"]["results"]
        by_task = {next(t["value"] for t in r["tags"] if t["key"] == "airlift/airflow_task_id"): r for r in dagster_runs}
        assert sorted(by_task) == sorted(migrated_so_far)
        assert all(r["status"] == "SUCCESS" for r in dagster_runs)
        built = {"/".join(m["assetKey"]["path"]) for r in dagster_runs for m in r["assetMaterializations"]}
        expected = {"load_raw_customers": {"raw_data/raw_customers"}, "run_dbt_model": DBT_ASSETS, "export_customers": {"customers_csv"}}
        assert built == set().union(*(expected[t] for t in migrated_so_far))

    # roll back the dbt task: Airflow runs dbt again, Dagster runs the two others
    reparse("run_dbt_model", False)
    run = airflow.trigger_and_wait(DAG_ID, timeout=600)
    assert run["state"] == "success"
    airflow_runs.append(run["dag_run_id"])
    dagster_runs = dagster.graphql(RUNS, {"tag": run["dag_run_id"]})["runsOrError"]["results"]
    assert sorted(next(t["value"] for t in r["tags"] if t["key"] == "airlift/airflow_task_id") for r in dagster_runs) == ["export_customers", "load_raw_customers"]

    # Exactly once across the paths: the Dagster daemon's sensor observed what Airflow ran and skipped what
    # the migrated tasks' Dagster runs built; every asset has one materialization per Airflow run.
    assets = ["raw_data/raw_customers", *sorted(DBT_ASSETS), "customers_csv", f"airflow_instance_one/dag/{DAG_ID}"]
    run_tags: dict[str, dict[str, str]] = {}

    def airflow_run_of(materialization: dict[str, Any]) -> str | None:
        for entry in materialization["metadataEntries"]:
            if entry["label"] == "Airflow run id":
                return str(entry.get("text"))
        if materialization["runId"] not in run_tags:
            node = dagster.graphql(RUN_TAGS, {"id": materialization["runId"]})["runOrError"]
            run_tags[materialization["runId"]] = {t["key"]: t["value"] for t in node.get("tags") or []}
        return run_tags[materialization["runId"]].get(AIRFLOW_RUN_ID_RUN_TAG)

    def held() -> Counter[tuple[str, str | None]]:
        counts: Counter[tuple[str, str | None]] = Counter()
        for asset in assets:
            node = dagster.graphql(MATERIALIZATIONS, {"key": {"path": asset.split("/")}})["assetOrError"]
            for m in node.get("assetMaterializations") or [] if node["__typename"] == "Asset" else []:
                counts[(asset, airflow_run_of(m))] += 1
        return counts

    expected = Counter({(asset, run_id): 1 for asset in assets for run_id in airflow_runs})
    wait_until(lambda: all(held()[k] for k in expected), timeout=240, interval=5,
               what="the sensor to observe the last run (every asset of every Airflow run materialized)")
    # one more sensor tick, started after that and finished: nothing else may arrive
    all_held = time.time()
    wait_until(lambda: any(t["status"] in ("SUCCESS", "SKIPPED") and t["timestamp"] > all_held for t in dagster.sensor_state(SENSOR)["ticks"]),
               timeout=180, interval=2, what="one more tick of the sensor")
    counts = held()
    assert {k: counts[k] for k in expected} == expected
    assert not {k: n for k, n in counts.items() if n > 1}, "an asset materialized twice for one Airflow run"

"""Walk the feature examples (examples/datasets, examples/partitions, examples/mirror-runs) on a real
Airflow: each example's DAG files are served by Airflow, its ``defs.py`` is loaded as the README says
(``EXAMPLE_AIRFLOW_URL``) and its sensor is ticked in this process against a Dagster instance, as the
daemon would."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
    build_sensor_context,
)

from airlift_dagster.run_mirror import MIRRORED_RUN_TAG
from airlift_protocol import AIRFLOW_RUN_ID_RUN_TAG
from airlift_testing import AirflowServer, wait_until

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parent.parent
FEATURES = ("datasets", "partitions", "mirror-runs")
SENSOR = "airflow_instance_one__airflow_sensor"


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """One Airflow serving every example's DAG folder."""
    dags = tmp_path_factory.mktemp("dags")
    for feature in FEATURES:
        for dag_file in (EXAMPLES / feature / "airflow_dags").glob("*.py"):
            shutil.copy(dag_file, dags)
    server = airflow_server_factory(dags)
    server.wait_for_dags(["publish_orders", "build_orders_report", "daily_sales", "nightly_export"])
    previous = os.environ.get("EXAMPLE_AIRFLOW_URL")
    os.environ["EXAMPLE_AIRFLOW_URL"] = server.url
    yield server
    if previous is None:
        os.environ.pop("EXAMPLE_AIRFLOW_URL", None)
    else:
        os.environ["EXAMPLE_AIRFLOW_URL"] = previous


def _load(feature: str) -> Definitions:
    """``examples/<feature>/defs.py`` as ``dagster dev -f`` loads it."""
    spec = importlib.util.spec_from_file_location(f"example_{feature.replace('-', '_')}", EXAMPLES / feature / "defs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs  # type: ignore[no-any-return]


class Daemon:
    """Ticks one example's sensor and stores what it returns, as Dagster's daemon does."""

    def __init__(self, defs: Definitions, instance: DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None

    def tick(self) -> None:
        sensor = self.defs.resolve_sensor_def(SENSOR)
        result = sensor(build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor))
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.cursor = result.cursor

    def materializations(self, key: AssetKey) -> list[AssetMaterialization]:
        records = self.instance.fetch_materializations(key, limit=100, ascending=True).records
        return [r.asset_materialization for r in records if r.asset_materialization is not None]

    def of_run(self, key: AssetKey, run_id: str) -> list[AssetMaterialization]:
        return [m for m in self.materializations(key) if m.metadata["Airflow run id"].value == run_id]

    def tick_until(self, done: Callable[[], bool], what: str) -> None:
        """Tick until ``done`` (the sensor leaves runs younger than its settle time to a later tick), then once more."""

        def ticked() -> bool:
            self.tick()
            return done()

        wait_until(ticked, timeout=240, what=what, interval=3.0)
        self.tick()


def test_datasets_example(airflow: AirflowServer) -> None:
    defs = _load("datasets")
    dataset = AssetKey(["airflow_instance_one", "dataset", "s3", "lake", "orders", "daily_parquet"])
    report_dag = AssetKey(["airflow_instance_one", "dag", "build_orders_report"])
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    assert {d.asset_key for d in specs[dataset].deps} == {AssetKey("orders_raw")}, "the producing task's asset is upstream"
    assert dataset in {d.asset_key for d in specs[report_dag].deps}, "the DAG scheduled on the dataset is downstream"

    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(defs, instance)
        daemon.tick()
        airflow.unpause("build_orders_report")
        produced = airflow.trigger_and_wait("publish_orders")
        assert produced["state"] == "success"
        # Airflow runs the consumer because the dataset was updated
        consumer = wait_until(lambda: next(iter(airflow.get("/dags/build_orders_report/dagRuns").get("dag_runs", [])), None),
                              timeout=180, what="the run of build_orders_report the dataset event triggers", interval=2.0)
        consumed = airflow.wait_for_run("build_orders_report", consumer["dag_run_id"])
        daemon.tick_until(lambda: bool(daemon.of_run(dataset, produced["dag_run_id"]) and daemon.of_run(report_dag, consumed["dag_run_id"])),
                          what="the dataset event and the consumer's run in Dagster")
        events = daemon.materializations(dataset)
        print(f"\ndataset {dataset.to_user_string()}: " + "; ".join(f"{k}={getattr(v, 'value', v)}" for k, v in events[0].metadata.items()))
        assert len(events) == 1, "one Airflow dataset event, one materialization"
        assert events[0].metadata["Source"].value == "publish_orders.write_orders"
        assert len(daemon.of_run(AssetKey("orders_raw"), produced["dag_run_id"])) == 1


def test_partitions_example(airflow: AirflowServer) -> None:
    defs = _load("partitions")
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(defs, instance)
        daemon.tick()
        airflow.unpause("daily_sales")
        run_id = str(airflow.post("/dags/daily_sales/dagRuns", json={"conf": {}, "logical_date": "2024-03-05T00:00:00+00:00"})["dag_run_id"])
        run = airflow.wait_for_run("daily_sales", run_id)
        assert run["state"] == "success"
        key = AssetKey("daily_sales")
        daemon.tick_until(lambda: bool(daemon.of_run(key, run_id)), what=f"daily_sales of Airflow run {run_id}")
        partitions = [m.partition for m in daemon.of_run(key, run_id)]
        print(f"\nAirflow run {run_id}, data interval {run['data_interval_start']} - {run['data_interval_end']}: partitions {partitions}")
        assert partitions == [run["data_interval_start"][:10]], "the day the run's data interval covers"


def test_mirror_runs_example(airflow: AirflowServer) -> None:
    defs = _load("mirror-runs")
    assert defs.resolve_job_def("airflow_instance_one__nightly_export") is not None, "one job per mirrored DAG"
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(defs, instance)
        daemon.tick()
        run = airflow.trigger_and_wait("nightly_export")
        assert run["state"] == "success"
        mirrored_filter = RunsFilter(tags={MIRRORED_RUN_TAG: "true", AIRFLOW_RUN_ID_RUN_TAG: run["dag_run_id"]})

        def mirrored_success() -> bool:
            return [r.status for r in instance.get_runs(filters=mirrored_filter)] == [DagsterRunStatus.SUCCESS]

        daemon.tick_until(mirrored_success, what=f"the mirrored run of {run['dag_run_id']}, succeeded")
        (mirrored,) = instance.get_runs(filters=mirrored_filter)
        tags: dict[str, Any] = dict(mirrored.tags)
        print(f"\nmirrored run {mirrored.run_id} job={mirrored.job_name} tags={tags}")
        assert mirrored.job_name == "airflow_instance_one__nightly_export"
        assert tags["airlift/airflow_dag_id"] == "nightly_export"
        exported = daemon.materializations(AssetKey("nightly_export_file"))
        assert [m.metadata["Airflow run id"].value for m in exported] == [run["dag_run_id"]]
        stored = instance.fetch_materializations(AssetKey("nightly_export_file"), limit=10).records
        assert [r.run_id for r in stored] == [mirrored.run_id], "the materialization is in the mirrored run's event log"


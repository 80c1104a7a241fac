"""Peer and observe a real Airflow (the version under test), driven through Airflow's REST API as an
operator would (clear, mark success, roll back, map a DAG later, catch up after a pause): exact
materializations per asset (Airflow run id and try number) and their order; then a DAG file breaks
under a real Dagster webserver + daemon. One Airflow server for the whole module, with
airlift-airflow installed: its listener writes a row per DAG-run start and end, which the sensor
reads instead of scanning Airflow's runs (the other real-Airflow suites of this package have no
listener: they cover the scan)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DailyPartitionsDefinition,
    Definitions,
    build_sensor_context,
)

from airlift_dagster import (
    PARTITION_CHECK_NAME,
    AirflowInstance,
    AirliftSensorCursor,
    BasicAuthBackend,
    SensorSettings,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)
from airlift_protocol import (
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCESS,
    TimeWindowPartitioning,
    dagster_run_tags,
    partition_key_for_airflow_run,
)
from airlift_testing import (
    SAMPLE_DAGS,
    SAMPLE_DATASET_DAGS,
    AirflowServer,
    DagsterServer,
    repo_root,
    wait_until,
)

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
DAG_IDS = ["team.sales-daily_v2", "mapped_dag", "failing_dag"]
DATASET_DAG_IDS = ["dataset_producer", "dataset_consumer", "daily_partitioned", "seven_day_interval"]


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dags")


@pytest.fixture(scope="module")
def airflow(airflow_server_factory: Callable[..., AirflowServer], dags_folder: Path) -> AirflowServer:
    shutil.copy(SAMPLE_DAGS, dags_folder)
    (dags_folder / "quick.py").write_text(QUICK_DAG)
    (dags_folder / "empty.py").write_text(EMPTY_DAG)
    packages = repo_root() / "packages"
    server = airflow_server_factory(dags_folder, extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"])
    server.wait_for_dags([*DAG_IDS, "quick_dag", "empty_dag"])
    return server


QUICK_DAG = """
from datetime import datetime

try:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG
    from airflow.operators.python import PythonOperator

with DAG("quick_dag", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, max_active_runs=32):
    PythonOperator(task_id="only", python_callable=lambda: "ok")
"""


EMPTY_DAG = """
from datetime import datetime

try:
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator

with DAG("empty_dag", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    EmptyOperator(task_id="start") >> EmptyOperator(task_id="end")
"""


def _client(airflow: AirflowServer) -> AirflowInstance:
    return AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=airflow.url, username="admin", password="admin"), name="airflow_one")


SALES = dag_defs(
    "team.sales-daily_v2",
    task_defs("extract", AssetSpec(["sales", "raw_orders"])),
    task_defs("transform_left", AssetSpec(["sales", "left"], deps=[["sales", "raw_orders"]])),
    task_defs("transform_right", AssetSpec(["sales", "right"], deps=[["sales", "raw_orders"]])),
    task_defs("load", AssetSpec(["sales", "report"], deps=[["sales", "left"], ["sales", "right"]])),
)
FAILING = dag_defs("failing_dag", task_defs("fine", AssetSpec("fine_table")), task_defs("broken", AssetSpec("broken_table")))
MAPPED = dag_defs("mapped_dag", task_defs("process", AssetSpec("processed_items")))
QUICK = dag_defs("quick_dag", task_defs("only", AssetSpec("quick_table")))


def _defs(airflow: AirflowServer, *mapped: Definitions, datasets: bool = False, **knobs: Any) -> Definitions:
    return build_defs_from_airflow_instance(
        airflow_instance=_client(airflow),
        defs=Definitions.merge(*(mapped or (SALES, MAPPED, FAILING, QUICK))),
        sensor_settings=SensorSettings(settle=timedelta(0), history_window=timedelta(minutes=30), **knobs),
        datasets=datasets,
    )


class Daemon:
    """Plays Dagster's daemon for one sensor: evaluate, store the events, then save the cursor."""

    def __init__(self, defs: Definitions, instance: DagsterInstance, cursor: str | None = None) -> None:
        self.defs = defs
        self.instance = instance
        self.cursor = cursor
        self.events: list[Any] = []

    def tick(self) -> list[Any]:
        sensor = self.defs.resolve_sensor_def("airflow_one__airflow_sensor")
        result = sensor(build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor))
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.cursor = result.cursor
        self.events.extend(result.asset_events)
        return list(result.asset_events)

    def materializations(self, *run_ids: str) -> list[tuple[str, str, int]]:
        """(asset, Airflow run id, try number; 0 for a DAG asset) of the runs given, in emitted order."""
        out = []
        for e in self.events:
            if isinstance(e, AssetMaterialization) and str(e.metadata["Airflow run id"].value) in run_ids:
                try_number = int(e.metadata["Try number"].value) if "Try number" in e.metadata else 0
                out.append((e.asset_key.to_user_string(), str(e.metadata["Airflow run id"].value), try_number))
        return out


def _report(case: str, rows: list[tuple[str, str, int]]) -> None:
    print(f"\n{case}:")
    for asset, run_id, try_number in rows:
        print(f"  {asset:40s} run={run_id} try={try_number}")


def _clear(airflow: AirflowServer, dag_id: str, run_id: str, task_ids: list[str], *, downstream: bool) -> None:
    airflow.post(f"/dags/{dag_id}/clearTaskInstances", json={
        "dry_run": False, "task_ids": task_ids, "dag_run_id": run_id, "include_downstream": downstream,
        "include_upstream": False, "only_failed": False, "reset_dag_runs": True,
    })
    airflow.wait_for_run(dag_id, run_id)


def _mark_task_success(airflow: AirflowServer, dag_id: str, run_id: str, task_id: str) -> None:
    body: dict[str, Any] = {"new_state": "success"}
    if airflow.generation == 2:
        body["dry_run"] = False
    airflow.patch(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}", json=body)


def _mark_run_success(airflow: AirflowServer, dag_id: str, run_id: str) -> None:
    airflow.patch(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", json={"state": "success"})


SALES_ALL = ["sales/raw_orders", "sales/left", "sales/right", "sales/report", "airflow_one/dag/team.sales-daily_v2"]


def test_peer_and_observe_real_runs(airflow: AirflowServer) -> None:
    defs = _defs(airflow, SALES, MAPPED, FAILING)
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    for dag_id in DAG_IDS:
        assert AssetKey(["airflow_one", "dag", dag_id]) in specs
    assert dag_id in specs[AssetKey(["airflow_one", "dag", dag_id])].metadata["Source code"].value

    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(defs, instance)
        daemon.tick()
        runs = {dag_id: airflow.trigger_and_wait(dag_id) for dag_id in DAG_IDS}
        assert {d: r["state"] for d, r in runs.items()} == {"team.sales-daily_v2": "success", "mapped_dag": "success", "failing_dag": "failed"}
        saved = daemon.cursor
        daemon.tick()
        restarted = Daemon(defs, instance, saved)  # a sensor restarted from the cursor saved before that tick
        restarted.tick()
        run_ids = [r["dag_run_id"] for r in runs.values()]
        materializations = [e for e in daemon.events if isinstance(e, AssetMaterialization)]
        print("\nmaterializations from real Airflow runs:")
        for e in materializations:
            print(f"  {e.asset_key.to_user_string():40s} " + ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in e.metadata.items()))
        counts = Counter(k for k, _, _ in daemon.materializations(*run_ids))
        assert counts == Counter({
            "sales/raw_orders": 1, "sales/left": 1, "sales/right": 1, "sales/report": 1,
            "airflow_one/dag/team.sales-daily_v2": 1,
            "processed_items": 3,  # one per map index
            "airflow_one/dag/mapped_dag": 1,
            "fine_table": 1,
        })
        sales = [k for k, _, _ in daemon.materializations(runs["team.sales-daily_v2"]["dag_run_id"])]
        assert sales[0] == "sales/raw_orders"
        assert sales[-2:] == ["sales/report", "airflow_one/dag/team.sales-daily_v2"]
        mapped = sorted(e.metadata["Map index"].value for e in materializations if e.asset_key == AssetKey("processed_items"))
        assert mapped == [0, 1, 2]
        report = next(e for e in materializations if e.asset_key == AssetKey(["sales", "report"]))
        assert report.metadata["Airflow run"].value.startswith(airflow.url)
        assert "load" in report.metadata["Airflow task log"].value
        checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in daemon.events if isinstance(e, AssetCheckEvaluation)}
        assert checks[("airflow_one/dag/failing_dag", "airflow_dag_run_succeeded")] is False
        assert checks[("broken_table", "airflow_task_succeeded")] is False
        assert checks[("fine_table", "airflow_task_succeeded")] is True
        assert checks[("airflow_one/dag/team.sales-daily_v2", "airflow_dag_run_succeeded")] is True
        assert not restarted.materializations(*run_ids), "a restarted sensor does not repeat what Dagster already holds"
        cursor = AirliftSensorCursor.parse(daemon.cursor)
        assert cursor.high_water is not None and len(daemon.cursor or "") < 2000
        daemon.tick()
        assert len(daemon.materializations(*run_ids)) == 10, "nothing new: nothing emitted"


def test_run_events_name_every_run_start_and_end_and_the_sensor_reads_runs_from_them(airflow: AirflowServer) -> None:
    """airlift-airflow's listener in Airflow's scheduler: a row per run start and end, also for a run
    of tasks that never ran (``EmptyOperator`` only: no try row); a run marked by REST is named by
    Airflow 3's listener row, by the action's row on Airflow 2. The sensor takes the runs from them."""
    empty = dag_defs("empty_dag", task_defs("end", AssetSpec("empty_end")))
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(_defs(airflow, empty, FAILING), instance)
        daemon.tick()
        started = datetime.now(timezone.utc)
        empty_run = airflow.trigger_and_wait("empty_dag")["dag_run_id"]
        failed_run = airflow.trigger_and_wait("failing_dag")["dag_run_id"]
        daemon.tick()
        assert AirliftSensorCursor.parse(daemon.cursor).listening is not None, "the sensor found the run-event rows"
        _mark_run_success(airflow, "failing_dag", failed_run)
        for _ in range(2):
            daemon.tick()
        rows = [(e.event, e.dag_id, e.run_id, e.task_id, e.owner) for e in _client(airflow).iter_event_logs(
            after=started, before=datetime.now(timezone.utc), events=[RUN_RUNNING, RUN_SUCCESS, RUN_FAILED])]
        print("\nrun-event rows:", *rows, sep="\n  ")
        assert [r for r in rows if r[2] == empty_run] == [(RUN_RUNNING, "empty_dag", empty_run, None, "airlift"),
                                                          (RUN_SUCCESS, "empty_dag", empty_run, None, "airlift")]
        failing = [r[0] for r in rows if r[2] == failed_run]
        assert failing == [RUN_RUNNING, RUN_FAILED, *([RUN_SUCCESS] if airflow.generation == 3 else [])], failing
        if airflow.generation == 2:  # no listener call for a REST mark; the action's own row names the run
            marks = [e for e in _client(airflow).iter_event_logs(after=started, before=datetime.now(timezone.utc))
                     if e.run_id == failed_run and e.task_id is None and not e.event.startswith("airlift.")]
            assert marks, "Airflow 2 logs the REST mark with the run"
        assert Counter(k for k, _, _ in daemon.materializations(empty_run)) == Counter({"empty_end": 1, "airflow_one/dag/empty_dag": 1})
        failing_counts = Counter(k for k, _, _ in daemon.materializations(failed_run))  # the mark may succeed "broken" too
        assert failing_counts["fine_table"] == 1 and failing_counts["airflow_one/dag/failing_dag"] == 1, failing_counts
        assert AirliftSensorCursor.parse(daemon.cursor).unheard is None, "no run ended without its row"


def test_clear_one_task_and_clear_with_downstream(airflow: AirflowServer) -> None:
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(_defs(airflow, SALES), instance)
        daemon.tick()
        run_id = airflow.trigger_and_wait("team.sales-daily_v2")["dag_run_id"]
        daemon.tick()
        _clear(airflow, "team.sales-daily_v2", run_id, ["transform_left"], downstream=False)
        daemon.tick()
        _clear(airflow, "team.sales-daily_v2", run_id, ["transform_right"], downstream=True)
        daemon.tick()
        rows = daemon.materializations(run_id)
        _report("clear one task, then clear one with downstream", rows)
        dag = "airflow_one/dag/team.sales-daily_v2"
        assert rows == [
            ("sales/raw_orders", run_id, 1), ("sales/left", run_id, 1), ("sales/right", run_id, 1), ("sales/report", run_id, 1), (dag, run_id, 0),
            ("sales/left", run_id, 2), (dag, run_id, 0),
            ("sales/right", run_id, 2), ("sales/report", run_id, 2), (dag, run_id, 0),
        ]


def test_mark_failed_task_success_and_mark_failed_run_success(airflow: AirflowServer) -> None:
    """Two repairs of a failed run. Marking the failed task success makes Airflow clear its failed
    downstream task and queue the run again (the scheduler finishes it); marking the whole run success
    marks every unfinished task success and keeps the run's end date. Each is reported once."""
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(_defs(airflow, FAILING), instance)
        daemon.tick()
        repaired, marked = airflow.trigger("failing_dag"), airflow.trigger("failing_dag")
        for run_id in (repaired, marked):
            assert airflow.wait_for_run("failing_dag", run_id)["state"] == "failed"
        daemon.tick()
        tries = {run_id: next(t["try_number"] for t in airflow.task_instances("failing_dag", run_id) if t["task_id"] == "broken")
                 for run_id in (repaired, marked)}
        _mark_task_success(airflow, "failing_dag", repaired, "broken")
        assert airflow.wait_for_run("failing_dag", repaired)["state"] == "success"
        daemon.tick()
        _mark_run_success(airflow, "failing_dag", marked)
        daemon.tick()
        # Airflow up to 3.2 marks every task of the run success; 3.3 leaves a failed task failed
        broken_marked = {t["task_id"]: t["state"] for t in airflow.task_instances("failing_dag", marked)}["broken"] == "success"
        dag = "airflow_one/dag/failing_dag"
        for run_id in (repaired, marked):
            rows = daemon.materializations(run_id)
            _report(f"mark a failed {'task' if run_id == repaired else 'run'} success", rows)
            broken = [("broken_table", run_id, tries[run_id])] if run_id == repaired or broken_marked else []
            assert rows == [("fine_table", run_id, 1), *broken, (dag, run_id, 0)]
        latest = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in daemon.events if isinstance(e, AssetCheckEvaluation)}
        assert latest[("broken_table", "airflow_task_succeeded")] is True  # the repaired run's try
        assert latest[("airflow_one/dag/failing_dag", "airflow_dag_run_succeeded")] is True


def test_roll_back_a_migrated_task_without_reload(airflow: AirflowServer) -> None:
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(_defs(airflow, SALES), instance)
        daemon.tick()
        migrated = airflow.trigger_and_wait("team.sales-daily_v2")["dag_run_id"]
        # what the DagsterOperator leaves when the migrated task succeeded: a successful Dagster run with its tags
        instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags=dagster_run_tags(
            dag_id="team.sales-daily_v2", task_id="extract", run_id=migrated, try_number=1, instance_name="airflow_one"),
            status=DagsterRunStatus.SUCCESS))
        daemon.tick()
        # `migrated: false` again; Airflow runs the task itself; the code location is NOT reloaded
        rolled_back = airflow.trigger_and_wait("team.sales-daily_v2")["dag_run_id"]
        daemon.tick()
        rows = daemon.materializations(migrated, rolled_back)
        _report("migrated run, then rolled back (no reload)", rows)
        assert [r for r in rows if r[1] == migrated and r[0] == "sales/raw_orders"] == []
        assert Counter(k for k, r, _ in rows if r == migrated) == Counter(SALES_ALL[1:])
        assert Counter(k for k, r, _ in rows if r == rolled_back) == Counter(SALES_ALL)


def test_dag_added_to_the_mapping_after_its_run_finished(airflow: AirflowServer) -> None:
    with DagsterInstance.ephemeral() as instance:
        before = Daemon(_defs(airflow, SALES), instance)
        before.tick()
        run_id = airflow.trigger_and_wait("mapped_dag")["dag_run_id"]
        before.tick()
        assert before.materializations(run_id) == [("airflow_one/dag/mapped_dag", run_id, 0)]
        after = Daemon(_defs(airflow, SALES, MAPPED), instance, before.cursor)  # reloaded with the DAG mapped
        after.tick()
        after.tick()
        rows = after.materializations(run_id)
        _report("DAG added to the mapping after its run finished", rows)
        assert rows == [("processed_items", run_id, 1)] * 3


def test_paused_sensor_catches_up_in_bounded_ticks(airflow: AirflowServer) -> None:
    RUNS = 8  # 24 rows (8 runs + 16 task instances) at most 10 per tick: at least 3 ticks
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(_defs(airflow, QUICK, max_rows_per_tick=10), instance)
        daemon.tick()
        airflow.unpause("quick_dag")
        # The runs finish while the sensor does not tick. They go in batches of 4: a
        # burst at once overloads Airflow 3's SQLite-backed standalone server (its own writes lock the
        # file), which is not what this test is about.
        run_ids: list[str] = []
        finished: list[dict[str, Any]] = []
        for first in range(0, RUNS, 4):
            batch = [_trigger_with_id(airflow, "quick_dag", f"catch_up_{i:02d}_{uuid.uuid4().hex[:6]}", i)
                     for i in range(first, min(first + 4, RUNS))]
            finished += [airflow.wait_for_run("quick_dag", r, timeout=600) for r in batch]
            run_ids += batch
        assert {r["state"] for r in finished} == {"success"}
        ticks = 0
        while True:
            ticks += 1
            daemon.tick()
            cursor = AirliftSensorCursor.parse(daemon.cursor)
            if (cursor.high_water and cursor.high_water >= max(_parse(r["end_date"]) for r in finished)) or ticks > 40:
                break
        rows = daemon.materializations(*run_ids)
        _report(f"sensor paused while {RUNS} runs finished, caught up in {ticks} ticks", rows)
        assert ticks >= 3, "the per-tick budget split the catch-up"
        assert Counter(rows) == Counter([("quick_table", r, 1) for r in run_ids] + [("airflow_one/dag/quick_dag", r, 0) for r in run_ids])
        for r in run_ids:  # the task asset before the DAG asset, in every run
            mine = [k for k, run, _ in rows if run == r]
            assert mine == ["quick_table", "airflow_one/dag/quick_dag"]


def _trigger_with_id(airflow: AirflowServer, dag_id: str, run_id: str, i: int) -> str:
    """Trigger with our own run id (and, on Airflow 2, a distinct logical date: it must be unique per DAG)."""
    body: dict[str, Any] = {"dag_run_id": run_id, "conf": {}}
    if airflow.generation == 3:
        body["logical_date"] = None
    else:
        body["logical_date"] = (datetime.now(timezone.utc) - timedelta(minutes=i + 1)).isoformat()
    return str(airflow.post(f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_definitions_validate(airflow: AirflowServer) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    env = {**os.environ, "AIRLIFT_TEST_AIRFLOW_URL": airflow.url}
    done = subprocess.run([str(dagster), "definitions", "validate", "-f", str(HERE / "defs_for_validate.py")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


BROKEN_DAG = '''
from datetime import datetime
from airflow import DAG
try:
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:
    from airflow.operators.empty import EmptyOperator

with DAG("{dag_id}", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    EmptyOperator(task_id="first") >> EmptyOperator(task_id="second")
'''

BROKEN_DEFS = '''
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

BROKEN_LOCATION = "broken_defs.py"
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
        {"name": BROKEN_LOCATION}, timeout=300,  # the reload reads Airflow: slow on a busy machine
    )["reloadRepositoryLocation"]
    return dict(answer)


def _node(dagster: DagsterServer, path: list[str]) -> dict[str, Any]:
    return dict(dagster.graphql(NODE, {"path": path})["assetNodeOrError"])


def test_a_broken_dag_file_never_blanks_the_code_location(
    airflow: AirflowServer, dags_folder: Path, dagster_server_factory: Callable[..., DagsterServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """One DAG file breaks while a real Dagster webserver + daemon runs the sensor: the code location
    reloads with every asset (the broken DAG's from what Airflow last parsed), the broken DAG's asset
    shows Airflow's import error and fails its ``airflow_dag_imports`` check, the sensor keeps
    materializing the other DAG's runs, and fixing the file restores the DAG. Its DAG files join the
    module's server only now (after the tests above: Airflow 3 drops a broken DAG from its list)."""
    for dag_id in ("steady", "fragile"):
        (dags_folder / f"{dag_id}.py").write_text(BROKEN_DAG.format(dag_id=dag_id))
    airflow.wait_for_dags(["steady", "fragile"])
    defs_file = tmp_path_factory.mktemp("broken-defs") / BROKEN_LOCATION
    defs_file.write_text(BROKEN_DEFS)
    dagster = dagster_server_factory(defs_file=defs_file, extra_env={"AIRLIFT_TEST_AIRFLOW_URL": airflow.url}, startup_timeout=600)
    fragile_dag = ["broken_test", "dag", "fragile"]
    assert "airflow_dag_imports" not in str(_node(dagster, fragile_dag))

    # a teammate's typo: Airflow reports an import error for the file (and Airflow 3 drops the DAG from its list)
    fragile_file = dags_folder / "fragile.py"
    fragile_file.write_text(BROKEN_DAG.format(dag_id="fragile") + "\nthis is a typo\n")
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
    fragile_file.write_text(BROKEN_DAG.format(dag_id="fragile"))
    airflow.reparse(fragile_file)
    assert _reload(dagster)["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    node = _node(dagster, fragile_dag)
    assert "Airflow cannot import" not in (node["description"] or "")
    assert {"name": "airflow_dag_imports"} not in node["assetChecksOrError"]["checks"]
    print(f"\nAirflow {airflow.version}: broken DAG kept with its import error; sensor kept working; fixed file restored it")


DAILY = DailyPartitionsDefinition(start_date="2024-01-01")
DATASETS = Definitions.merge(
    dag_defs("dataset_producer", task_defs("write_orders", AssetSpec("orders_raw"))),
    dag_defs("daily_partitioned", task_defs("build_day", AssetSpec("daily_sales", partitions_def=DAILY))),
    dag_defs("seven_day_interval", task_defs("build_week", AssetSpec("daily_rollup", partitions_def=DAILY))),
)


def _trigger_at(airflow: AirflowServer, dag_id: str, logical_date: str) -> str:
    airflow.unpause(dag_id)
    return str(airflow.post(f"/dags/{dag_id}/dagRuns", json={"conf": {}, "logical_date": logical_date})["dag_run_id"])


@pytest.mark.extended
def test_datasets_and_partitions(airflow: AirflowServer, dags_folder: Path) -> None:
    # Added to the module's server only now: a DAG file more, parsed every 2 s, adds SQLite write
    # contention the run-heavy tests above do not need.
    shutil.copy(SAMPLE_DATASET_DAGS, dags_folder)
    airflow.wait_for_dags(DATASET_DAG_IDS)
    defs = _defs(airflow, DATASETS, datasets=True)
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    orders, report = AssetKey(["airflow_one", "dataset", "warehouse", "sales", "orders_daily"]), AssetKey(["airflow_one", "dataset", "warehouse", "sales", "report"])
    assert {d.asset_key for d in specs[orders].deps} == {AssetKey("orders_raw")}, "the producing task's asset is upstream"
    assert orders in {d.asset_key for d in specs[AssetKey(["airflow_one", "dag", "dataset_consumer"])].deps}, "the consumer DAG is downstream"
    assert report in specs
    with DagsterInstance.ephemeral() as instance:
        daemon = Daemon(defs, instance)
        daemon.tick()
        produced = airflow.trigger_and_wait("dataset_producer")
        runs = {dag_id: _trigger_at(airflow, dag_id, "2024-03-05T00:00:00+00:00") for dag_id in ("daily_partitioned", "seven_day_interval")}
        finished = {dag_id: airflow.wait_for_run(dag_id, run_id) for dag_id, run_id in runs.items()}
        saved = daemon.cursor
        daemon.tick()
        Daemon(defs, instance, saved).tick()  # restarted from the cursor saved before that tick: nothing twice

        keys = [AssetKey("orders_raw"), orders, report, AssetKey("daily_sales"), AssetKey("daily_rollup")]
        records = [r for key in keys for r in instance.fetch_materializations(key, limit=100, ascending=True).records]
        recorded = [r.asset_materialization for r in records if r.asset_materialization is not None]
        print("\nmaterializations as Dagster recorded them:")
        for m in recorded:
            print(f"  {m.asset_key.to_user_string()} partition={m.partition!r}\n    tags={dict(m.tags or {})}\n    metadata="
                  + "; ".join(f"{k}={getattr(v, 'value', v)}" for k, v in m.metadata.items()))
        dataset_events = [m for m in recorded if m.asset_key == orders]
        assert len(dataset_events) == 1, "one Airflow dataset event, one materialization"
        assert dataset_events[0].metadata["Airflow run id"].value == produced["dag_run_id"]
        assert dataset_events[0].metadata["Source"].value == "dataset_producer.write_orders"

        daily = finished["daily_partitioned"]
        expected = partition_key_for_airflow_run(
            TimeWindowPartitioning.from_dagster(fmt=DAILY.fmt, description=str(DAILY)),
            logical_date=_parse(daily["logical_date"]), data_interval_start=_parse(daily["data_interval_start"]),
            data_interval_end=_parse(daily["data_interval_end"]))
        print(f"daily run data interval {daily['data_interval_start']} - {daily['data_interval_end']} -> partition {expected}")
        mine = [m for m in recorded if m.asset_key == AssetKey("daily_sales") and m.metadata["Airflow run id"].value == daily["dag_run_id"]]
        assert [m.partition for m in mine] == [expected]  # (the scheduler may add a run of its own when the DAG is unpaused)
        assert expected in ("2024-03-04", "2024-03-05")  # Airflow 2 intervals end at the logical date, Airflow 3 cron runs start at it
        assert not [m for m in recorded if m.asset_key == AssetKey("daily_rollup")], "a seven-day interval names no daily partition"
        checks = [e for e in daemon.events if isinstance(e, AssetCheckEvaluation) and e.check_name == PARTITION_CHECK_NAME]
        failed = [e for e in checks if not e.passed]
        assert {e.asset_key for e in failed} == {AssetKey("daily_rollup")}
        assert AssetKey("daily_sales") in {e.asset_key for e in checks if e.passed}
        print(f"failed check on daily_rollup: {failed[0].description}")
        assert "longer than one Daily partition" in (failed[0].description or "")

"""``airlift decommission`` against the fake Airflow (both REST generations), and the definitions
:func:`load_decommissioned_defs` builds from its files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from dagster import (
    AssetKey,
    AssetSpec,
    DagsterInstance,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    Definitions,
    MaterializeResult,
    asset,
    build_schedule_context,
    build_sensor_context,
    materialize,
)

from airlift_dagster import dag_defs, load_decommissioned_defs, task_defs
from airlift_dagster.cli import EXIT_ERROR, EXIT_OK, cli
from airlift_dagster.decommission import (
    DATA_INTERVAL_START_TAG,
    DECOMMISSIONED_DAG_TAG,
    DagSchedule,
    DecommissionFileError,
    DecommissionPlan,
    dump_decommission_plan,
    load_decommission_plan,
)
from airlift_protocol import WHOLE_DAG_TASK_ID, task_migration_doc
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState, FakeTask

DAG = "dag_00001"
UTC = timezone.utc
DEFS_FILE = '''
from dagster import Definitions, asset
from airlift_dagster import AirflowInstance, BasicAuthBackend, dag_defs, task_defs
import os

airflow_instance = AirflowInstance(auth_backend=BasicAuthBackend(os.environ["AIRLIFT_AIRFLOW_URL"], "admin", "admin"),
                                   name="warehouse_airflow")

@asset
def first(): ...

@asset(deps=[first])
def second(): ...

@asset(deps=[second])
def third(): ...

defs = Definitions.merge(dag_defs("dag_00001", task_defs("task_000", Definitions(assets=[first])),
    task_defs("task_001", Definitions(assets=[second])), task_defs("task_002", Definitions(assets=[third]))))
'''


@pytest.fixture(params=[2, 3], ids=["airflow2", "airflow3"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeAirflow]:
    state = FakeAirflowState.generate(dags=2, tasks_per_dag=3)
    dag = state.dag(DAG)
    assert dag is not None
    for task in dag.tasks:
        task.doc_md = task_migration_doc(None)
    dag.is_paused = False
    if request.param == 2:
        dag.timetable = {"schedule_interval": {"__type": "CronExpression", "value": "@daily"}, "catchup": False}
    else:
        dag.timetable = {"timetable_summary": "0 0 * * *", "catchup": False}
    with FakeAirflow(state, generation=int(request.param)) as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, fake: FakeAirflow) -> Path:
    (tmp_path / "migration_state").mkdir()
    (tmp_path / "migration_state" / f"{DAG}.yaml").write_text(
        "tasks:\n  task_000: {migrated: true}\n  task_001: {migrated: true}\n  task_002: {migrated: true}\n")
    (tmp_path / "defs.py").write_text(DEFS_FILE)
    return tmp_path


def run(fake: FakeAirflow, project: Path, *args: str, defs: bool = True) -> Result:
    env = {"AIRLIFT_AIRFLOW_URL": fake.url, "AIRLIFT_AIRFLOW_USERNAME": "admin", "AIRLIFT_AIRFLOW_PASSWORD": "admin",
           "NO_COLOR": "1", "COLUMNS": "250"}
    where = ["--defs", str(project / "defs.py")] if defs else ["--out-dir", str(project / "decommissioned")]
    return CliRunner().invoke(cli, ["decommission", "-d", str(project), *where, *args], env=env, catch_exceptions=False)


def paused(fake: FakeAirflow) -> bool:
    dag = fake.state.dag(DAG)
    assert dag is not None
    return dag.is_paused


def test_dry_run_shows_the_file_and_changes_nothing(fake: FakeAirflow, project: Path) -> None:
    result = run(fake, project, DAG, "--dry-run")
    assert result.exit_code == EXIT_OK, result.output
    assert f"+dag_id: {DAG}" in result.output and "+  cron: 0 0 * * *" in result.output
    assert "dry run: would write" in result.output and f"pause DAG '{DAG}'" in result.output
    assert not (project / "decommissioned").exists()
    assert not paused(fake)


def test_decommission_writes_the_file_pauses_and_undo_reverts(fake: FakeAirflow, project: Path) -> None:
    result = run(fake, project, DAG)
    assert result.exit_code == EXIT_OK, result.output
    path = project / "decommissioned" / f"{DAG}.yaml"
    plan = load_decommission_plan(path)
    assert (plan.schedule.kind, plan.schedule.cron, plan.airflow_was_paused) == ("cron", "0 0 * * *", False)
    assert (plan.airflow_instance, plan.dag_asset_key) == ("warehouse_airflow", ("warehouse_airflow", "dag", DAG))  # --url, named by --defs
    assert any("migration_state" in item for item in plan.airflow_cleanup)
    assert paused(fake)
    assert "delete DAG" in result.output

    again = run(fake, project, DAG)
    assert again.exit_code == EXIT_ERROR and "already decommissioned" in again.output

    dry = run(fake, project, DAG, "--undo", "--dry-run")
    assert dry.exit_code == EXIT_OK and path.exists() and paused(fake)
    undone = run(fake, project, DAG, "--undo")
    assert undone.exit_code == EXIT_OK, undone.output
    assert not path.exists() and not paused(fake)


def test_undo_leaves_a_dag_paused_that_was_paused_before(fake: FakeAirflow, project: Path) -> None:
    dag = fake.state.dag(DAG)
    assert dag is not None
    dag.is_paused = True
    assert run(fake, project, DAG).exit_code == EXIT_OK
    assert run(fake, project, DAG, "--undo").exit_code == EXIT_OK
    assert paused(fake)


def test_refuses_a_dag_with_unmigrated_tasks(fake: FakeAirflow, project: Path) -> None:
    (project / "migration_state" / f"{DAG}.yaml").write_text("tasks:\n  task_000: {migrated: true}\n  task_001: {migrated: false}\n")
    result = run(fake, project, DAG)
    assert result.exit_code == EXIT_ERROR
    assert "tasks not migrated" in result.output and "task_001, task_002" in result.output
    assert not (project / "decommissioned").exists() and not paused(fake)


def test_a_whole_dag_migration_is_decommissioned_once_airflow_runs_it(fake: FakeAirflow, project: Path) -> None:
    (project / "migration_state" / f"{DAG}.yaml").write_text("migrated: true\n")
    refused = run(fake, project, DAG)
    assert refused.exit_code == EXIT_ERROR and "Airflow still runs the DAG's own tasks" in refused.output
    dag = fake.state.dag(DAG)
    assert dag is not None
    dag.tasks = [FakeTask(WHOLE_DAG_TASK_ID, doc_md=task_migration_doc(None))]
    whole = DEFS_FILE[:DEFS_FILE.index("defs = Definitions.merge(")]
    (project / "defs.py").write_text(whole + 'defs = dag_defs("dag_00001", Definitions(assets=[first, second, third]))\n')
    result = run(fake, project, DAG)
    assert result.exit_code == EXIT_OK, result.output
    (project / "migration_state" / f"{DAG}.yaml").write_text("migrated: false\n")
    assert run(fake, project, DAG, "--undo").exit_code == EXIT_OK
    assert "says 'migrated: false'" in run(fake, project, DAG).output


def test_refuses_a_migration_airflow_does_not_run_yet(fake: FakeAirflow, project: Path) -> None:
    dag = fake.state.dag(DAG)
    assert dag is not None
    dag.tasks[2].doc_md = None
    result = run(fake, project, DAG)
    assert result.exit_code == EXIT_ERROR and "Airflow still runs the original operator of task_002" in result.output
    assert not paused(fake)


def test_refuses_a_timetable_it_cannot_express(fake: FakeAirflow, project: Path) -> None:
    dag = fake.state.dag(DAG)
    assert dag is not None
    dag.timetable = ({"schedule_interval": {"__type": "CronExpression", "value": "@continuous"}} if fake.generation == 2
                     else {"timetable_summary": "@continuous"})
    result = run(fake, project, DAG)
    assert result.exit_code == EXIT_ERROR
    assert result.output.count("\n") == 1 and "'@continuous'" in result.output
    assert not (project / "decommissioned").exists() and not paused(fake)


def test_without_defs_the_instance_name_comes_from_instance_or_the_command_refuses(fake: FakeAirflow, project: Path) -> None:
    refused = run(fake, project, DAG, defs=False)
    assert refused.exit_code == EXIT_ERROR and refused.output.count("\n") == 1, refused.output
    assert "pass --instance NAME" in refused.output and "--defs" in refused.output
    assert not (project / "decommissioned").exists() and not paused(fake)
    assert run(fake, project, DAG, "--dry-run", defs=False).exit_code == EXIT_ERROR

    named = run(fake, project, DAG, "--instance", "warehouse_airflow", defs=False)
    assert named.exit_code == EXIT_OK, named.output
    plan = load_decommission_plan(project / "decommissioned" / f"{DAG}.yaml")
    assert plan.dag_asset_key == ("warehouse_airflow", "dag", DAG) and paused(fake)
    assert run(fake, project, DAG, "--undo", defs=False).exit_code == EXIT_OK  # the file names the instance
    assert not paused(fake)


def test_defs_without_an_airflow_instance_and_a_url_need_instance(fake: FakeAirflow, project: Path) -> None:
    start, end = DEFS_FILE.index("airflow_instance = "), DEFS_FILE.index("@asset")
    (project / "defs.py").write_text(DEFS_FILE[:start] + DEFS_FILE[end:])
    refused = run(fake, project, DAG)
    assert refused.exit_code == EXIT_ERROR and refused.output.count("\n") == 1, refused.output
    assert "defs.py has no AirflowInstance; pass --instance NAME" in refused.output
    assert not paused(fake)


def test_refuses_unknown_dag_and_undo_of_a_dag_not_decommissioned(fake: FakeAirflow, project: Path) -> None:
    assert "is not in" in run(fake, project, "no_such_dag").output
    assert "is not decommissioned" in run(fake, project, DAG, "--undo").output


# --------------------------------------------------------------------------- definitions
def _plan(schedule: DagSchedule, *, dag_id: str = "sales", catchup_from: datetime | None = None) -> DecommissionPlan:
    return DecommissionPlan(dag_id=dag_id, airflow_instance="af", dag_asset_key=("af", "dag", dag_id),
                            airflow_was_paused=False, schedule=schedule, catchup_from=catchup_from)


def _folder(tmp_path: Path, plan: DecommissionPlan) -> Path:
    folder = tmp_path / "decommissioned"
    folder.mkdir(exist_ok=True)
    (folder / f"{plan.dag_id}.yaml").write_text(dump_decommission_plan(plan))
    return folder


DAILY = DailyPartitionsDefinition(start_date="2024-01-01")


@asset(partitions_def=DAILY)
def orders() -> MaterializeResult:
    return MaterializeResult()


def test_cron_schedule_targets_the_partition_of_the_data_interval(tmp_path: Path) -> None:
    schedule = DagSchedule(kind="cron", source="@daily", cron="0 0 * * *", start=datetime(2024, 1, 1, tzinfo=UTC), data_interval=True)
    user = dag_defs("sales", task_defs("load", Definitions(assets=[orders])))
    defs = load_decommissioned_defs(_folder(tmp_path, _plan(schedule)), defs=user)
    sched = defs.resolve_schedule_def("sales_decommissioned_schedule")
    assert sched.default_status == DefaultScheduleStatus.RUNNING and sched.cron_schedule == "0 0 * * *"
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(instance=instance, repository_def=defs.get_repository_def(), scheduled_execution_time=datetime(2024, 3, 5, tzinfo=UTC))
        requests = sched.evaluate_tick(context).run_requests or []
    assert [r.partition_key for r in requests] == ["2024-03-04"]
    assert requests[0].tags[DECOMMISSIONED_DAG_TAG] == "sales"
    assert requests[0].tags[DATA_INTERVAL_START_TAG] == "2024-03-04T00:00:00+00:00"
    assert defs.resolve_job_def("sales_decommissioned").asset_layer.selected_asset_keys == {AssetKey("orders")}
    # Airflow no longer lists the DAG: its asset stays in Dagster (history visible)
    assert AssetKey(["af", "dag", "sales"]) in {s.key for s in defs.resolve_all_asset_specs()}


def test_the_dag_asset_is_not_declared_twice(tmp_path: Path) -> None:
    schedule = DagSchedule(kind="manual", source="None")
    user = Definitions.merge(dag_defs("sales", task_defs("load", Definitions(assets=[orders]))),
                             Definitions(assets=[AssetSpec(["af", "dag", "sales"])]))
    defs = load_decommissioned_defs(_folder(tmp_path, _plan(schedule)), defs=user)
    assert not list(defs.schedules or []) and defs.resolve_job_def("sales_decommissioned") is not None
    assert [s.key for s in defs.resolve_all_asset_specs()].count(AssetKey(["af", "dag", "sales"])) == 1


@asset
def report() -> None: ...


def test_interval_schedule_with_catchup_runs_each_missed_interval_once(tmp_path: Path) -> None:
    schedule = DagSchedule(kind="interval", source="2:00:00", interval_seconds=7200, start=datetime(2024, 1, 1, tzinfo=UTC),
                           catchup=True, data_interval=True)
    plan = _plan(schedule, catchup_from=datetime(2024, 1, 2, 1, tzinfo=UTC))
    defs = load_decommissioned_defs(_folder(tmp_path, plan), defs=dag_defs("sales", task_defs("t", Definitions(assets=[report]))))
    sched = defs.resolve_schedule_def("sales_decommissioned_schedule")
    assert sched.cron_schedule == "0 * * * *"
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(instance=instance, repository_def=defs.get_repository_def(), scheduled_execution_time=datetime(2024, 1, 2, 7, tzinfo=UTC))
        requests = sched.evaluate_tick(context).run_requests or []
    assert [r.tags[DATA_INTERVAL_START_TAG][11:16] for r in requests] == ["00:00", "02:00", "04:00"]
    assert len({r.run_key for r in requests}) == 3


@asset
def orders_dataset() -> None: ...


def test_dataset_trigger_runs_the_job_when_the_dataset_asset_is_updated(tmp_path: Path) -> None:
    schedule = DagSchedule(kind="assets", source="Dataset", uris=("s3://orders",), condition="all")
    upstream = AssetSpec("orders_ds", metadata={"Airflow URI": "s3://orders"})
    user = Definitions.merge(dag_defs("sales", task_defs("t", Definitions(assets=[report]))), Definitions(assets=[upstream, orders_dataset]))
    defs = load_decommissioned_defs(_folder(tmp_path, _plan(schedule)), defs=user)
    sensor = defs.resolve_sensor_def("sales_decommissioned_sensor")
    with DagsterInstance.ephemeral() as instance:
        first = sensor.evaluate_tick(build_sensor_context(instance=instance))
        assert not first.run_requests
        cursor = first.cursor
        assert not sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor)).run_requests
        instance.report_runless_asset_event(__import__("dagster").AssetMaterialization("orders_ds"))
        fired = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor))
        assert len(fired.run_requests or []) == 1
        assert not sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=fired.cursor)).run_requests


def test_a_dataset_without_an_asset_is_a_clear_error(tmp_path: Path) -> None:
    schedule = DagSchedule(kind="assets", source="Dataset", uris=("s3://missing",))
    with pytest.raises(Exception, match="no asset for the Airflow dataset 's3://missing'"):
        load_decommissioned_defs(_folder(tmp_path, _plan(schedule)), defs=dag_defs("sales", task_defs("t", Definitions(assets=[report]))))


def test_a_dag_without_executable_assets_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no executable asset"):
        load_decommissioned_defs(_folder(tmp_path, _plan(DagSchedule(kind="manual", source="None"))),
                                 defs=dag_defs("sales", task_defs("t", AssetSpec("observed_only"))))


def test_decommission_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = _folder(tmp_path, _plan(DagSchedule(kind="manual", source="None"))) / "sales.yaml"
    path.write_text(path.read_text().replace("kind: manual", "kind: hourly"))
    with pytest.raises(DecommissionFileError, match=r"sales.yaml, schedule.kind: 'hourly' is not one of"):
        load_decommission_plan(path)
    path.write_text(path.read_text().replace("dag_id: sales", "dag_id: sales\nextra: 1"))
    with pytest.raises(DecommissionFileError, match="unknown key 'extra'"):
        load_decommission_plan(path)
    assert load_decommissioned_defs(tmp_path / "none", defs=Definitions()) is not None
    _ = materialize, timedelta

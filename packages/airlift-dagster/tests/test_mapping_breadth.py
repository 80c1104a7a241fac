"""Mapping breadth against the fake Airflow (both REST generations): assets mapped to a whole DAG."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    Output,
    RunRequest,
    SensorResult,
    asset,
    build_sensor_context,
    multi_asset,
)

from airlift_client import AirflowInstance
from airlift_dagster import (
    AirflowInstanceComponent,
    AirliftDagsterError,
    SensorSettings,
    build_defs_from_airflow_instance,
    built_by_tasks,
    dag_defs,
    task_defs,
)
from airlift_dagster.mapping import task_handles_of
from airlift_protocol import WHOLE_DAG_TASK_ID, dagster_run_tags
from airlift_protocol.tags import (
    AIRFLOW_TASK_ID_RUN_TAG,
    TASK_ASSET_INDEX_METADATA,
    AirflowEventId,
    airflow_event_key_of,
    parse_task_asset_index,
)
from airlift_testing.fake_airflow import FakeAirflow

DAG_KEY = "inst/dag/dag_00000"
NOW = datetime.now(timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Ticker:
    """Plays Dagster's daemon: evaluates the sensor, stores its events, then keeps the cursor."""

    def __init__(self, defs: Definitions, instance: DagsterInstance, clock: Clock) -> None:
        self.defs, self.instance, self.clock = defs, instance, clock
        self.cursor: str | None = None
        self.events: list[Any] = []
        self.run_requests: list[RunRequest] = []

    def tick(self) -> SensorResult:
        result = self.defs.resolve_sensor_def("inst__airflow_sensor")(
            build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor))
        assert isinstance(result, SensorResult)
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.cursor = result.cursor
        self.events.extend(result.asset_events)
        self.run_requests.extend(result.run_requests or [])
        self.clock.now += timedelta(minutes=1)
        return result

    def materializations(self) -> list[tuple[str, str]]:
        """(asset, Airflow run id) of every materialization emitted, in order."""
        return [(e.asset_key.to_user_string(), str(e.metadata["Airflow run id"].value))
                for e in self.events if isinstance(e, AssetMaterialization)]

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter(self.materializations())


def _whole_dag_defs(instance: AirflowInstance, clock: Clock, *extra: Definitions, **kwargs: Any) -> Definitions:
    return build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=Definitions.merge(dag_defs("dag_00000", task_defs("task_000", AssetSpec("a")), AssetSpec("weekly_report")), *extra),
        sensor_settings=SensorSettings(clock=clock),
        **kwargs,
    )


def _keys(ticker: Ticker, run_id: str) -> list[str]:
    return [k for k, r in ticker.materializations() if r == run_id]


def test_dag_level_asset_is_materialized_when_the_dag_run_succeeds(instance: AirflowInstance, fake: FakeAirflow,
                                                                  dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_whole_dag_defs(instance, clock := Clock()), dagster_instance, clock)
    ok = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=6))
    failed = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5), state="failed", task_state="failed")
    ticker.tick()
    ticker.tick()
    assert _keys(ticker, ok.run_id) == ["a", "weekly_report", DAG_KEY], "before the DAG asset, after the task assets"
    assert _keys(ticker, failed.run_id) == []
    event = next(e for e in ticker.events if isinstance(e, AssetMaterialization) and e.asset_key == AssetKey("weekly_report"))
    assert airflow_event_key_of(event.tags) == AirflowEventId("inst", "dag_00000", ok.run_id, run_end_date=ok.end_date.isoformat()).key  # type: ignore[union-attr]
    assert event.metadata["Airflow run id"].value == ok.run_id
    spec = {s.key: s for s in ticker.defs.resolve_all_asset_specs()}
    assert AssetKey("weekly_report") in {d.asset_key for d in spec[AssetKey(["inst", "dag", "dag_00000"])].deps}
    assert spec[AssetKey("weekly_report")].metadata["Airflow DAG"].value.startswith(fake.url)


def test_a_whole_dag_migration_is_not_reported_again(instance: AirflowInstance, fake: FakeAirflow,
                                                    dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_whole_dag_defs(instance, clock := Clock()), dagster_instance, clock)
    migrated = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=7))
    other_instance = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=6))
    not_migrated = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    for i, (run, name) in enumerate([(migrated, "inst"), (other_instance, "staging")]):
        ticker.instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id=f"{i}" * 8 + "-0000-0000-0000-000000000000", tags=dagster_run_tags(
            dag_id="dag_00000", task_id=WHOLE_DAG_TASK_ID, run_id=run.run_id, try_number=1, instance_name=name),
            status=DagsterRunStatus.SUCCESS))
    ticker.tick()
    assert Counter(k for k, _ in ticker.materializations())["weekly_report"] == 2
    assert "weekly_report" not in _keys(ticker, migrated.run_id)
    assert DAG_KEY in _keys(ticker, migrated.run_id), "the DAG asset is reported for every successful run"
    assert "weekly_report" in _keys(ticker, other_instance.run_id), "another instance's run does not count"
    assert "weekly_report" in _keys(ticker, not_migrated.run_id)


def test_dag_newly_mapped_as_a_whole_gets_its_history(instance: AirflowInstance, fake: FakeAirflow,
                                                     dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    old = fake.state.add_run("dag_00001", start=NOW - timedelta(hours=2))
    before = Ticker(_whole_dag_defs(instance, clock), dagster_instance, clock)
    before.tick()
    after = Ticker(_whole_dag_defs(instance, clock, dag_defs("dag_00001", AssetSpec("late_dag_level"))), dagster_instance, clock)
    after.cursor = before.cursor  # a code-location reload: same sensor, same cursor
    after.tick()
    after.tick()
    assert after.counts() == Counter({("late_dag_level", old.run_id): 1}), "the DAG asset is not reported twice"


def test_unknown_dag_id_of_a_dag_level_mapping_fails_the_load_with_a_suggestion(instance: AirflowInstance) -> None:
    with pytest.raises(AirliftDagsterError, match=r"dag_defs\('dag_0000O'\).*no DAG 'dag_0000O'.*Did you mean .*'dag_00000'"):
        build_defs_from_airflow_instance(airflow_instance=instance, defs=dag_defs("dag_0000O", AssetSpec("x")))
    defs = build_defs_from_airflow_instance(airflow_instance=instance, defs=dag_defs("later", AssetSpec("x")), allow_unknown_ids=["later"])
    assert AssetKey("x") in {s.key for s in defs.resolve_all_asset_specs()}


YAML = """
name: inst
webserver_url: "{{ env.AIRLIFT_TEST_URL }}"
auth:
  kind: basic
  username: admin
  password: admin
mappings:
  - dag_id: dag_00000
    task_id: task_000
    assets:
      - key: a
  - dag_id: dag_00000
    assets:
      - key: warehouse/weekly_report
sensor:
  settle_seconds: 0
"""


def test_component_maps_assets_to_a_whole_dag(monkeypatch: pytest.MonkeyPatch, fake: FakeAirflow, tmp_path: Path,
                                              dagster_instance: DagsterInstance) -> None:
    monkeypatch.setenv("AIRLIFT_TEST_URL", fake.url)
    component = AirflowInstanceComponent.resolve_from_yaml(YAML)
    component.write_state_to_path(tmp_path / "state")
    defs = component.build_defs_from_state(None, tmp_path / "state")  # type: ignore[arg-type]  # the context is not used
    run = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    ticker = Ticker(defs, dagster_instance, clock=Clock())
    ticker.tick()
    assert _keys(ticker, run.run_id) == ["a", "warehouse/weekly_report", DAG_KEY]
    bad = YAML.replace("  - dag_id: dag_00000\n    assets:", "  - dag_id: dag_0000\n    assets:")
    component = AirflowInstanceComponent.resolve_from_yaml(bad)
    with pytest.raises(AirliftDagsterError, match=r"no DAG 'dag_0000'.*Did you mean"):
        component.build_defs_from_state(None, tmp_path / "state")  # type: ignore[arg-type]


# ------------------------------------------------------------------------ checks declared with assets
@multi_asset(specs=[AssetSpec("orders")], check_specs=[AssetCheckSpec("orders_not_empty", asset="orders")], can_subset=True)
def _orders(context):  # type: ignore[no-untyped-def]  # dagster validates the annotation at runtime
    for key in context.selected_asset_check_keys:
        yield AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=True)


@asset(check_specs=[AssetCheckSpec("totals_add_up", asset="totals")])
def totals() -> Iterator[Any]:
    yield Output(1)
    yield AssetCheckResult(check_name="totals_add_up", passed=True)


def test_checks_declared_with_observed_assets_are_requested_after_airflow_data(
    instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    defs = build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=dag_defs("dag_00000", task_defs("task_000", _orders), task_defs("task_001", totals)),
        sensor_settings=SensorSettings(clock=clock),
    )
    assert "totals:totals_add_up" in caplog.text and "cannot be subset" in caplog.text
    ticker = Ticker(defs, dagster_instance, clock)
    fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5), state="failed", task_state="failed")
    ticker.tick()
    assert not ticker.run_requests, "no new Airflow data: no check run"
    fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50))
    ticker.tick()
    requested = [k for r in ticker.run_requests for k in r.asset_check_keys or []]
    assert requested == [AssetCheckKey(AssetKey("orders"), "orders_not_empty")], "not the check that would rebuild `totals`"
    assert ticker.run_requests[0].asset_selection == []
    sensor = defs.resolve_sensor_def("inst__airflow_sensor")
    assert sensor.asset_selection is not None


# ------------------------------------------------------------------------ one asset, several tasks
def _shared_defs(instance: AirflowInstance, clock: Clock) -> Definitions:
    return build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=Definitions.merge(
            dag_defs("dag_00000", task_defs("task_000", AssetSpec("a"))),
            built_by_tasks([("dag_00000", "task_001"), ("dag_00001", "task_002")], AssetSpec("sales")),
        ),
        sensor_settings=SensorSettings(clock=clock),
    )


def test_an_asset_built_by_several_tasks_is_materialized_for_each_tasks_success(
    instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance,
) -> None:
    ticker = Ticker(_shared_defs(instance, clock := Clock()), dagster_instance, clock)
    daily = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=7))
    weekly = fake.state.add_run("dag_00001", start=NOW - timedelta(minutes=6))
    migrated = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    # the DagsterOperator replaced dag_00000.task_001 for `migrated`: its Dagster run built `sales`
    ticker.instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="c" * 8 + "-0000-0000-0000-000000000000", tags=dagster_run_tags(
        dag_id="dag_00000", task_id="task_001", run_id=migrated.run_id, try_number=1, instance_name="inst"), status=DagsterRunStatus.SUCCESS))
    ticker.tick()
    ticker.tick()
    sales = [e for e in ticker.events if isinstance(e, AssetMaterialization) and e.asset_key == AssetKey("sales")]
    assert sorted((str(e.metadata["Airflow run id"].value), e.tags[AIRFLOW_TASK_ID_RUN_TAG]) for e in sales) == sorted(
        [(daily.run_id, "task_001"), (weekly.run_id, "task_002")]), "one per task success, naming the task; not the migrated one"
    assert _keys(ticker, daily.run_id) == ["a", "sales", DAG_KEY]
    specs = {s.key: s for s in ticker.defs.resolve_all_asset_specs()}
    for dag_id, task_id in [("dag_00000", "task_001"), ("dag_00001", "task_002")]:
        dag_asset = specs[AssetKey(["inst", "dag", dag_id])]
        assert AssetKey("sales") in {d.asset_key for d in dag_asset.deps}
        index = parse_task_asset_index(dag_asset.metadata[TASK_ASSET_INDEX_METADATA].value)
        assert index is not None and index[task_id] == [("sales",)], "the Airflow side finds it from either DAG"
    assert specs[AssetKey("sales")].metadata["Airflow tasks"] == "dag_00000.task_001, dag_00001.task_002"


def test_several_handles_keep_the_single_handle_api_and_are_validated(instance: AirflowInstance) -> None:
    one = built_by_tasks([("dag_00000", "task_000")], AssetSpec("x"))
    same = dag_defs("dag_00000", task_defs("task_000", AssetSpec("x")))
    assert [s.tags for s in one.resolve_all_asset_specs()] == [s.tags for s in same.resolve_all_asset_specs()]
    nested = dag_defs("dag_00001", task_defs("task_001", built_by_tasks([("dag_00000", "task_000"), ("dag_00002", "task_000")], AssetSpec("y"))))
    assert task_handles_of(next(iter(nested.resolve_all_asset_specs()))) == [
        ("dag_00000", "task_000"), ("dag_00002", "task_000"), ("dag_00001", "task_001")]
    with pytest.raises(AirliftDagsterError, match=r"task_defs\('task_0009'\) in dag_defs\('dag_00001'\).*Did you mean"):
        build_defs_from_airflow_instance(airflow_instance=instance,
                                         defs=built_by_tasks([("dag_00000", "task_000"), ("dag_00001", "task_0009")], AssetSpec("z")))
    with pytest.raises(AirliftDagsterError, match=r"at least one"):
        built_by_tasks([], AssetSpec("z"))


# ------------------------------------------------------------------------ a job per mirrored DAG
def test_each_mirrored_dag_has_a_job_that_says_it_runs_in_airflow(instance: AirflowInstance) -> None:
    plain = build_defs_from_airflow_instance(airflow_instance=instance)
    assert [j.name for j in plain.resolve_all_job_defs() if j.name.startswith("inst__")] == []
    defs = build_defs_from_airflow_instance(airflow_instance=instance, sensor_settings=SensorSettings(mirror_runs=True))
    names = sorted(j.name for j in defs.resolve_all_job_defs() if j.name.startswith("inst__"))
    assert names == ["inst__dag_00000", "inst__dag_00001", "inst__dag_00002"], "the job names the mirrored runs carry"
    job = defs.resolve_job_def("inst__dag_00001")
    assert "Airflow DAG dag_00001" in (job.description or "") and job.tags["airlift/airflow_dag_id"] == "dag_00001"
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "stands for the Airflow DAG dag_00001, which runs in Airflow" in str(failure.step_failure_data.error)

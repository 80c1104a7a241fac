"""Exactly-once sensor semantics against the fake Airflow (both REST generations)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetMaterialization,
    AssetObservation,
    AssetSpec,
    DagsterInstance,
    DagsterRun,
    Definitions,
    SensorResult,
    asset_check,
    build_sensor_context,
)

from airlift_client import AirflowInstance
from airlift_dagster import (
    AirliftDagsterError,
    AirliftSensorCursor,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)
from airlift_protocol import dagster_run_tags
from airlift_testing.fake_airflow import FakeAirflow

NOW = datetime.now(timezone.utc)


def _defs(instance: AirflowInstance) -> Definitions:
    @asset_check(asset="b")
    def b_is_fine() -> AssetCheckResult:
        return AssetCheckResult(passed=True)

    return build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=dag_defs(
            "dag_00000",
            task_defs("task_000", AssetSpec("a")),
            task_defs("task_001", AssetSpec("b", deps=["a"]), Definitions(asset_checks=[b_is_fine])),
            task_defs("task_002", AssetSpec("c", deps=["b"]), AssetSpec("c2", deps=["b"])),
        ),
    )


class Ticker:
    def __init__(self, defs: Definitions, dagster_instance: DagsterInstance) -> None:
        self.defs = defs
        self.instance = dagster_instance
        self.sensor = defs.resolve_sensor_def("inst__airflow_sensor")
        self.cursor: str | None = None
        self.events: list[Any] = []

    def tick(self) -> SensorResult:
        result = self.sensor(build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor))
        assert isinstance(result, SensorResult)
        self.cursor = result.cursor
        self.events.extend(result.asset_events)
        return result

    def materializations(self) -> Counter[tuple[str, str]]:
        return Counter(
            (e.asset_key.to_user_string(), str(e.metadata["Airflow run id"].value))
            for e in self.events if isinstance(e, AssetMaterialization)
        )


@pytest.fixture
def ticker(instance: AirflowInstance, dagster_instance: DagsterInstance) -> Ticker:
    return Ticker(_defs(instance), dagster_instance)


def test_success_run_materializes_in_dependency_order(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    result = ticker.tick()
    keys = [e.asset_key.to_user_string() for e in result.asset_events if isinstance(e, AssetMaterialization)]
    assert keys[:2] == ["a", "b"]
    assert set(keys[2:4]) == {"c", "c2"}
    assert keys[4] == "inst/dag/dag_00000"
    first = next(e for e in result.asset_events if isinstance(e, AssetMaterialization))
    assert first.metadata["Airflow run"].value.startswith(fake.url)
    assert "task_000" in first.metadata["Airflow task log"].value
    assert first.metadata["Try number"].value == 1
    assert first.metadata["Start date"].value <= first.metadata["End date"].value
    checks = [e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)]
    assert all(c.passed for c in checks)
    # the user's check on b runs because b got a new materialization
    assert [str(k) for r in result.run_requests or [] for k in r.asset_check_keys or []] == ["b:b_is_fine"] or \
        [k.name for r in result.run_requests or [] for k in r.asset_check_keys or []] == ["b_is_fine"]
    assert ticker.materializations()[("a", run.run_id)] == 1


def test_restart_ties_and_out_of_order_finishes_are_exactly_once(ticker: Ticker, fake: FakeAirflow) -> None:
    same_end = NOW - timedelta(minutes=3)
    r1 = fake.state.add_run("dag_00000", start=same_end - timedelta(seconds=30))
    r2 = fake.state.add_run("dag_00001", start=same_end - timedelta(seconds=30))  # tie on end date
    ticker.tick()
    saved = ticker.cursor
    # a run that STARTED earlier but finishes after the first tick (out of order), and a long run
    late = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=30), duration=timedelta(minutes=29, seconds=50))
    ticker.tick()
    ticker.tick()
    # restart: a new sensor process with the persisted cursor sees nothing new
    restarted = Ticker(ticker.defs, ticker.instance)
    restarted.cursor = saved
    restarted.tick()
    counts = ticker.materializations()
    assert counts[("inst/dag/dag_00000", r1.run_id)] == 1
    assert counts[("inst/dag/dag_00001", r2.run_id)] == 1
    assert counts[("a", late.run_id)] == 1
    assert all(n == 1 for n in counts.values())
    assert restarted.materializations() == Counter({("inst/dag/dag_00000", late.run_id): 1, ("a", late.run_id): 1,
                                                     ("b", late.run_id): 1, ("c", late.run_id): 1, ("c2", late.run_id): 1})


def test_late_committed_run_inside_overlap_is_not_lost(ticker: Ticker, fake: FakeAirflow) -> None:
    fake.state.add_run("dag_00001", start=NOW - timedelta(minutes=2))
    ticker.tick()
    # committed late with an end date before the high-water mark
    late = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=6), duration=timedelta(seconds=20))
    ticker.tick()
    assert ticker.materializations()[("inst/dag/dag_00000", late.run_id)] == 1


def test_running_and_failed_runs_are_visible(ticker: Ticker, fake: FakeAirflow) -> None:
    running = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=1), state="running", task_state="running")
    failed = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=8), state="failed", task_state="failed")
    result = ticker.tick()
    observations = [e for e in result.asset_events if isinstance(e, AssetObservation)]
    assert [o.metadata["Airflow run"].value.endswith(running.run_id.replace(":", "%3A").replace("+", "%2B")) for o in observations] == [True]
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)}
    assert checks[("inst/dag/dag_00000", "airflow_dag_run_succeeded")].passed is False
    assert failed.run_id in (checks[("inst/dag/dag_00000", "airflow_dag_run_succeeded")].description or "")
    assert checks[("a", "airflow_task_succeeded")].passed is False
    assert not [e for e in result.asset_events if isinstance(e, AssetMaterialization)]
    again = ticker.tick()
    assert not [e for e in again.asset_events if isinstance(e, AssetObservation)], "a running run is reported once"


def test_airflow_down_leaves_cursor_and_next_tick_catches_up(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    ticker.tick()  # warm up (nothing lost either way)
    before = ticker.cursor
    run2 = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=4))
    fake.fail_next(r"dagRuns/~/taskInstances/list", 500, times=2)  # = the retry policy's attempts
    with pytest.raises(AirliftDagsterError, match="cursor did not move"):
        ticker.tick()
    assert ticker.cursor == before
    ticker.tick()
    counts = ticker.materializations()
    assert counts[("a", run.run_id)] == 1
    assert counts[("a", run2.run_id)] == 1


def test_time_budget_resumes_where_it_stopped(instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    from airlift_dagster.sensor import evaluate_tick

    defs = _defs(instance)
    runs = [fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=60) + timedelta(seconds=10 * i), duration=timedelta(seconds=5)) for i in range(120)]
    plan = defs.resolve_sensor_def("inst__airflow_sensor")  # the sensor carries the plan in its closure
    assert plan is not None
    cursor = None
    seen: Counter[str] = Counter()
    ticks = 0
    from airlift_dagster import defs as defs_module

    state = defs_module.load_airflow_state(instance)
    sensor_plan = defs_module.SensorPlan.build(
        state=state, by_task={("dag_00000", "task_000"): [__import__("dagster").AssetKey("a")]}, specs=[AssetSpec("a")],
        dag_asset_keys={d.dag_id: defs_module.dag_asset_key("inst", d.dag_id) for d in state.dags}, user_check_keys={},
    )
    while True:
        ticks += 1
        outcome = evaluate_tick(context=build_sensor_context(instance=dagster_instance, cursor=cursor), airflow_instance=instance,
                                plan=sensor_plan, time_budget=0.0)
        cursor = outcome.cursor.serialize()
        for e in outcome.events:
            if isinstance(e, AssetMaterialization) and e.asset_key.to_user_string() == "a":
                seen[str(e.metadata["Airflow run id"].value)] += 1
        if not outcome.runs_pending:
            break
    assert ticks >= 3, "the budget split the work over several ticks"
    assert sorted(seen) == sorted(r.run_id for r in runs)
    assert set(seen.values()) == {1}
    assert len(AirliftSensorCursor.parse(cursor).done) <= 120


def test_migrated_task_is_not_materialized_twice(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    # the Airflow-side DagsterOperator launched a Dagster run for task_001 of this Airflow run
    ticker.instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="r" * 8 + "-0000-0000-0000-000000000000",
                                       tags=dagster_run_tags(dag_id="dag_00000", task_id="task_001", run_id=run.run_id, try_number=1)))
    ticker.tick()
    counts = ticker.materializations()
    assert counts[("a", run.run_id)] == 1
    assert counts[("b", run.run_id)] == 0
    assert counts[("inst/dag/dag_00000", run.run_id)] == 1


def test_cursor_is_small_and_versioned(ticker: Ticker, fake: FakeAirflow) -> None:
    for i in range(30):
        fake.state.add_run("dag_00001", start=NOW - timedelta(days=2) + timedelta(minutes=i))  # outside the lookback
    for i in range(5):
        fake.state.add_run("dag_00001", start=NOW - timedelta(minutes=50 - i))
    ticker.tick()
    parsed = AirliftSensorCursor.parse(ticker.cursor)
    assert parsed.high_water is not None
    assert len(parsed.done) <= 5, "only runs inside the overlap window are remembered"
    assert '"v":1' in (ticker.cursor or "")
    with pytest.raises(AirliftDagsterError, match="reset the sensor's cursor"):
        AirliftSensorCursor.parse("garbage")

"""Exactly-once sensor semantics against the fake Airflow (both REST generations).

The ``Ticker`` plays Dagster's daemon: it evaluates the sensor, STORES the events in the Dagster
instance (as the daemon does before saving the cursor), then keeps the cursor.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSpec,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    SensorResult,
    asset_check,
    build_sensor_context,
)

from airlift_client import AirflowInstance, BasicAuthBackend, RetryPolicy, TooManyRows
from airlift_dagster import (
    AirliftDagsterError,
    AirliftSensorCursor,
    build_defs_from_airflow_instance,
    dag_defs,
    task_defs,
)
from airlift_dagster.sensor import AirliftSensorCursor as Cursor
from airlift_dagster.sensor import SensorSettings
from airlift_dagster.sensor.cursor import SettledWindow, SweepWindow, advance_cursor
from airlift_dagster.sensor.windows import plan_tick
from airlift_protocol import dagster_run_tags
from airlift_protocol.events import TASK_RUN_CHECK_NAME
from airlift_protocol.tags import AirflowEventId, airflow_event_key_of
from airlift_testing.fake_airflow import FakeAirflow, FakeAirflowState, FakeEventLog, FakeRun

NOW = datetime.now(timezone.utc)


class Clock:
    """The sensor's clock in these tests: starts at NOW, moves one minute after every tick."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _defs(instance: AirflowInstance, clock: Clock | None = None, **knobs: Any) -> Definitions:
    @asset_check(asset="b")
    def b_is_fine() -> AssetCheckResult:
        return AssetCheckResult(passed=True)

    selector = knobs.pop("dag_selector_fn", None)
    return build_defs_from_airflow_instance(
        airflow_instance=instance,
        defs=dag_defs(
            "dag_00000",
            # declared in reverse: the order must come from Airflow's task dependencies, not the specs
            task_defs("task_002", AssetSpec("c"), AssetSpec("c2")),
            task_defs("task_001", AssetSpec("b"), Definitions(asset_checks=[b_is_fine])),
            task_defs("task_000", AssetSpec("a")),
        ),
        dag_selector_fn=selector,
        sensor_settings=SensorSettings(clock=clock or Clock(), **knobs),
    )


class Ticker:
    def __init__(self, defs: Definitions, dagster_instance: DagsterInstance, name: str = "inst", clock: Clock | None = None) -> None:
        self.clock = clock or _clock_of(defs, name)
        self.defs = defs
        self.instance = dagster_instance
        self.sensor = defs.resolve_sensor_def(f"{name}__airflow_sensor")
        self.cursor: str | None = None
        self.events: list[Any] = []

    def evaluate(self) -> SensorResult:
        result = self.sensor(build_sensor_context(instance=self.instance, definitions=self.defs, cursor=self.cursor))
        assert isinstance(result, SensorResult)
        return result

    def store(self, result: SensorResult) -> None:
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.events.extend(result.asset_events)

    @property
    def now(self) -> datetime:
        return self.clock.now

    def tick(self) -> SensorResult:
        result = self.evaluate()
        self.store(result)  # the daemon stores the events first ...
        self.cursor = result.cursor  # ... then saves the cursor
        self.clock.now += timedelta(minutes=1)
        return result

    def materializations(self) -> list[tuple[str, str, int]]:
        """(asset, Airflow run id, try number) of every materialization emitted, in order."""
        return [
            (e.asset_key.to_user_string(), str(e.metadata["Airflow run id"].value),
             int(e.metadata["Try number"].value) if "Try number" in e.metadata else 0)
            for e in self.events if isinstance(e, AssetMaterialization)
        ]

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((k, r) for k, r, _ in self.materializations())


@pytest.fixture
def ticker(instance: AirflowInstance, dagster_instance: DagsterInstance) -> Ticker:
    return Ticker(_defs(instance), dagster_instance)


def _tis(fake: FakeAirflow, run: FakeRun) -> dict[str, Any]:
    return {t.task_id: t for t in fake.state.tis_of_run(run)}


def _clear_and_rerun(fake: FakeAirflow, run: FakeRun, task_ids: list[str], *, at: datetime) -> None:
    """What Airflow does when tasks are cleared and run again: new try, new end dates, the run
    becomes successful again with a new end date."""
    tis = _tis(fake, run)
    fake.state.touch(run, at, state="queued", end_date=None)
    for i, task_id in enumerate(task_ids):
        ti = tis[task_id]
        fake.state.touch(ti, at, state=None, end_date=None)
        end = at + timedelta(seconds=10 * (i + 1))
        fake.state.touch(ti, end, state="success", try_number=ti.try_number + 1, start_date=end - timedelta(seconds=5), end_date=end)
    fake.state.touch(run, at + timedelta(seconds=10 * (len(task_ids) + 1)), state="success",
                     end_date=at + timedelta(seconds=10 * (len(task_ids) + 1)))


ALL = ["a", "b", "c", "c2", "inst/dag/dag_00000"]


def test_success_run_materializes_in_airflow_task_order_with_identity(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    result = ticker.tick()
    keys = [e.asset_key.to_user_string() for e in result.asset_events if isinstance(e, AssetMaterialization)]
    assert keys == ALL
    first = next(e for e in result.asset_events if isinstance(e, AssetMaterialization))
    assert first.metadata["Airflow run"].value.startswith(fake.url)
    assert "task_000" in first.metadata["Airflow task log"].value
    assert first.metadata["Try number"].value == 1
    assert airflow_event_key_of(first.tags) == AirflowEventId("inst", "dag_00000", run.run_id, task_id="task_000", try_number=1).key
    dag_event = [e for e in result.asset_events if isinstance(e, AssetMaterialization)][-1]
    assert airflow_event_key_of(dag_event.tags) == AirflowEventId("inst", "dag_00000", run.run_id, run_end_date=run.end_date.isoformat()).key  # type: ignore[union-attr]
    checks = [e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)]
    assert checks and all(c.passed for c in checks)
    assert [k.name for r in result.run_requests or [] for k in r.asset_check_keys or []] == ["b_is_fine"]
    assert not [e for e in ticker.tick().asset_events if isinstance(e, AssetMaterialization)], "nothing new, nothing emitted"


def test_cleared_task_rerun_is_one_new_try_and_one_dag_success(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=10))
    ticker.tick()
    _clear_and_rerun(fake, run, ["task_001"], at=ticker.now - timedelta(seconds=55))
    ticker.tick()
    ticker.tick()
    assert ticker.materializations() == [
        ("a", run.run_id, 1), ("b", run.run_id, 1), ("c", run.run_id, 1), ("c2", run.run_id, 1), ("inst/dag/dag_00000", run.run_id, 0),
        ("b", run.run_id, 2), ("inst/dag/dag_00000", run.run_id, 0),
    ]


def test_clear_with_downstream_reports_each_new_try_in_task_order(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=10))
    ticker.tick()
    _clear_and_rerun(fake, run, ["task_001", "task_002"], at=ticker.now - timedelta(seconds=55))
    ticker.tick()
    assert ticker.materializations()[5:] == [("b", run.run_id, 2), ("c", run.run_id, 2), ("c2", run.run_id, 2), ("inst/dag/dag_00000", run.run_id, 0)]


def test_marking_a_failed_task_and_a_failed_run_success(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=30), state="failed")
    tis = _tis(fake, run)
    fake.state.touch(tis["task_002"], tis["task_002"].updated_at, state="failed")
    first = ticker.tick()
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in first.asset_events if isinstance(e, AssetCheckEvaluation)}
    assert checks[("c", "airflow_task_succeeded")] is False
    assert checks[("inst/dag/dag_00000", "airflow_dag_run_succeeded")] is False
    # hand-marking keeps the end dates (Airflow does); the rows' updated_at moves
    fake.state.touch(tis["task_002"], ticker.now - timedelta(seconds=30), state="success")
    fake.state.touch(run, ticker.now - timedelta(seconds=30), state="success")
    second = ticker.tick()
    assert ticker.materializations() == [
        ("a", run.run_id, 1), ("b", run.run_id, 1),
        ("c", run.run_id, 1), ("c2", run.run_id, 1), ("inst/dag/dag_00000", run.run_id, 0),
    ]
    marked = [e for e in second.asset_events if isinstance(e, AssetMaterialization)]
    assert all("Marked in Airflow" in e.metadata for e in marked)
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in second.asset_events if isinstance(e, AssetCheckEvaluation)}
    assert checks[("c", "airflow_task_succeeded")] is True
    assert checks[("inst/dag/dag_00000", "airflow_dag_run_succeeded")] is True
    # a later note (row changes again, same try) adds nothing
    fake.state.touch(tis["task_000"], ticker.now - timedelta(seconds=30))
    ticker.tick()
    assert len(ticker.materializations()) == 5


def test_late_commit_is_caught_once_the_lateness_window_passed(instance: AirflowInstance, fake: FakeAirflow,
                                                               dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_defs(instance, lateness_window=timedelta(minutes=5), audit_interval=timedelta(0)), dagster_instance)
    early = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=20))
    ticker.tick()
    # committed after that tick, with update times the tick already read past
    late = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=19), committed_at=ticker.now - timedelta(minutes=18))
    ticker.tick()
    assert ticker.counts() == Counter({(k, early.run_id): 1 for k in ALL}), "not yet: it is behind the high-water mark"
    for _ in range(6):
        ticker.tick()
    # the window holding it was read again once the lateness window had passed: reported once
    assert ticker.counts() == Counter({(k, early.run_id): 1 for k in ALL} | {(k, late.run_id): 1 for k in ALL})


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_a_window_read_again_reads_task_instances_only_when_it_changed(instance: AirflowInstance, fake: FakeAirflow,
                                                                       dagster_instance: DagsterInstance, change_source: str) -> None:
    """After the lateness window a window is read again. With the audit log, a try-end row is written
    with its task's state, so an unchanged window's second read asks for no task instance of its
    tries (only those the scheduler sets, of its ended runs); a window holding a late commit is read
    whole, and its runs are reported once. The scan knows a change only from the rows, and reads them."""
    ticker = Ticker(_defs(instance, lateness_window=timedelta(minutes=3), change_source=change_source), dagster_instance)
    early = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=3))
    ticker.tick()
    fake.request_log.clear()
    for _ in range(6):
        ticker.tick()
    asked = [json.dumps(body) + path for _, path, body in fake.request_log if "taskInstances" in path]
    if change_source == "scan":
        assert asked
    else:
        assert asked and all("upstream_failed" in a for a in asked), asked
    late = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=3), committed_at=ticker.now - timedelta(minutes=2))
    ticker.tick()  # its rows are behind the high-water mark: found when their window is read again
    fake.request_log.clear()
    for _ in range(6):
        ticker.tick()
    asked = [json.dumps(body) + path for _, path, body in fake.request_log if "taskInstances" in path]
    assert [a for a in asked if "upstream_failed" not in a], "the changed window is read whole"
    assert ticker.counts() == Counter({(k, early.run_id): 1 for k in ALL} | {(k, late.run_id): 1 for k in ALL})


def _late_metadata(ticker: Ticker, run_id: str) -> list[str]:
    return [str(e.metadata["Committed late"].value) for e in ticker.events
            if isinstance(e, AssetMaterialization) and "Committed late" in e.metadata and e.metadata["Airflow run id"].value == run_id]


def test_commit_within_the_lateness_window_is_reported_once_without_warning(instance: AirflowInstance, fake: FakeAirflow,
                                                                           dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_defs(instance, lateness_window=timedelta(minutes=5)), dagster_instance)
    ticker.tick()
    late = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=3), committed_at=ticker.now - timedelta(minutes=2))
    reasons: list[str] = []
    for _ in range(20):
        result = ticker.tick()
        reasons.append(result.skip_reason.skip_message if result.skip_reason else "")
    assert ticker.counts() == Counter({(k, late.run_id): 1 for k in ALL})
    assert not _late_metadata(ticker, late.run_id) and not any("WARNING" in r for r in reasons), reasons


def test_commit_later_than_the_lateness_window_is_reported_once_with_a_warning_naming_it(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance, caplog: pytest.LogCaptureFixture) -> None:
    ticker = Ticker(_defs(instance, lateness_window=timedelta(minutes=5), audit_interval=timedelta(0)), dagster_instance)
    early = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=20))
    for _ in range(8):  # past the lateness window: the first window was read again and settled
        ticker.tick()
    assert Cursor.parse(ticker.cursor).settled, "the window read twice is audited from now on"
    late = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=25), committed_at=ticker.now - timedelta(minutes=24))
    with caplog.at_level("WARNING", logger="airlift_dagster"):
        ticker.tick()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "lateness_window" in r.getMessage()]
    assert len(warned) == 1 and f"dag_00000/{late.run_id}/task_000" in warned[0] and "reported now" in warned[0], warned
    caplog.clear()
    assert ticker.counts() == Counter({(k, early.run_id): 1 for k in ALL} | {(k, late.run_id): 1 for k in ALL})
    assert len(_late_metadata(ticker, late.run_id)) == len(ALL)
    with caplog.at_level("WARNING", logger="airlift_dagster"):
        for _ in range(3):  # found once: later ticks neither repeat the events nor warn again
            ticker.tick()
    assert not [r for r in caplog.records if "lateness_window" in r.getMessage()]
    assert ticker.counts() == Counter({(k, early.run_id): 1 for k in ALL} | {(k, late.run_id): 1 for k in ALL})


#: Rows a finished 3-task run adds to a window, as each change source counts them: the run and its 3
#: task instances (scan), the run and the 3 tries' end rows of the audit log.
RUN_ROWS = {"scan": 4, "auto": 4}


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_late_commit_into_a_window_too_large_to_reread_is_warned_about_with_the_recovery(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance, change_source: str) -> None:
    # a budget that holds the window's first read and not its second: scan, 8 rows then 12; audit log, 8 rows
    # naming 6 task instances (14), then 12 naming 9 (21)
    runs, budget = (2, 10) if change_source == "scan" else (2, 16)
    ticker = Ticker(_defs(instance, lateness_window=timedelta(minutes=5), max_rows_per_tick=budget,
                          audit_interval=timedelta(0), change_source=change_source), dagster_instance)
    for minutes in range(20, 20 + 10 * runs, 10):
        fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=minutes))
    for _ in range(8):
        ticker.tick()
    settled = Cursor.parse(ticker.cursor).settled
    assert settled and settled[0].rows == runs * RUN_ROWS[change_source]
    late = fake.state.add_run("dag_00000", start=ticker.now - timedelta(hours=20), committed_at=settled[0].lo + timedelta(seconds=1))
    result = ticker.tick()
    reason = result.skip_reason.skip_message if result.skip_reason else ""
    assert f"{RUN_ROWS[change_source]} row(s)" in reason and "NOT reported" in reason and "dagster sensor cursor inst__airflow_sensor --delete" in reason, reason
    assert not [k for k, r in ticker.counts() if r == late.run_id]
    again = ticker.tick()
    assert "WARNING" not in (again.skip_reason.skip_message if again.skip_reason else ""), "warned once"


def test_settled_windows_stay_few_and_contiguous() -> None:
    from airlift_dagster.sensor.cursor import MAX_SETTLED_WINDOWS, SettledWindow, settle_window

    t = NOW
    out: list[SettledWindow] = []
    for i in range(40):
        lo = t + timedelta(minutes=i) + (timedelta(microseconds=1) if i else timedelta(0))
        out = settle_window(out, SettledWindow(lo, t + timedelta(minutes=i + 1), 1))
    assert len(out) == MAX_SETTLED_WINDOWS and sum(w.rows for w in out) == 40 and out[0].lo == t
    restarted = settle_window(out, SettledWindow(t + timedelta(hours=2), t + timedelta(hours=3), 5))
    assert [w.rows for w in restarted] == [5], "a window that does not follow starts the audit again"
    cursor = Cursor(high_water=t, settled=out)
    assert Cursor.parse(cursor.serialize()).settled == out and len(cursor.serialize()) < 2000


def test_clock_skew_airflow_ahead_delays_but_loses_nothing(instance: AirflowInstance, fake: FakeAirflow,
                                                          dagster_instance: DagsterInstance) -> None:
    from airlift_dagster.sensor import evaluate_tick

    defs = _defs(instance)
    sensor_plan = _plan_of(defs)
    ahead = fake.state.add_run("dag_00000", start=NOW + timedelta(minutes=2))  # Airflow's clock runs 3 minutes ahead
    cursor = None
    emitted: list[str] = []
    for now in (NOW, NOW + timedelta(minutes=1), NOW + timedelta(minutes=4)):
        context = build_sensor_context(instance=dagster_instance, cursor=cursor)
        outcome = evaluate_tick(context=context, airflow_instance=instance, plan=sensor_plan, now=now)
        for event in outcome.events:
            dagster_instance.report_runless_asset_event(event)
        emitted += [e.asset_key.to_user_string() for e in outcome.events if isinstance(e, AssetMaterialization)]
        cursor = outcome.cursor.serialize()
        if now == NOW:
            assert not emitted, "rows stamped after 'now' wait for a later tick"
    assert emitted == ALL
    assert ahead.run_id


def _closure_value(defs: Definitions, type_name: str, name: str = "inst") -> Any:
    sensor_def = defs.resolve_sensor_def(f"{name}__airflow_sensor")
    closure = sensor_def._raw_fn.__closure__  # type: ignore[attr-defined]
    return next(c.cell_contents for c in closure or () if type(c.cell_contents).__name__ == type_name)


def _plan_of(defs: Definitions) -> Any:
    return _closure_value(defs, "SensorPlan")


def _clock_of(defs: Definitions, name: str = "inst") -> Clock:
    clock = _closure_value(defs, "SensorSettings", name).clock
    assert isinstance(clock, Clock)
    return clock


def test_crash_between_stored_events_and_saved_cursor_emits_nothing_twice(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    ticker.tick()
    run2 = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50))
    crashed = ticker.evaluate()
    ticker.store(crashed)  # stored, then the daemon dies before saving the cursor
    replay = ticker.tick()  # same cursor as the crashed tick
    assert not [e for e in replay.asset_events if isinstance(e, AssetMaterialization)]
    assert ticker.counts() == Counter({(k, run.run_id): 1 for k in ALL} | {(k, run2.run_id): 1 for k in ALL})


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_airflow_down_or_paging_failure_leaves_cursor_and_next_tick_catches_up(instance: AirflowInstance, fake: FakeAirflow,
                                                                               dagster_instance: DagsterInstance, change_source: str) -> None:
    ticker = Ticker(_defs(instance, change_source=change_source), dagster_instance)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    ticker.tick()
    before = ticker.cursor
    run2 = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50))
    # = the retry policy's attempts, on the window's list
    fake.fail_next(r"dagRuns/~/taskInstances$" if change_source == "scan" else r"/eventLogs$", 500, times=2)
    with pytest.raises(AirliftDagsterError, match="cursor did not move"):
        ticker.tick()
    assert ticker.cursor == before
    ticker.tick()
    counts = ticker.counts()
    assert counts[("a", run.run_id)] == 1
    assert counts[("a", run2.run_id)] == 1


@pytest.mark.parametrize("change_source", ["scan"])  # the audit log is read by time ranges, not pages of one list
def test_a_list_that_keeps_changing_fails_the_tick_not_a_partial_list(instance: AirflowInstance, fake: FakeAirflow,
                                                                      dagster_instance: DagsterInstance, change_source: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ticker = Ticker(_defs(instance, change_source=change_source), dagster_instance)
    for i in range(3):
        fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=9 - i))
    fake.maximum_page_limit = 2
    ticker.tick()
    before = ticker.cursor
    for i in range(3):
        fake.state.add_run("dag_00001", start=ticker.now - timedelta(seconds=55 - 5 * i), duration=timedelta(seconds=5))
    calls = {"n": 0}
    name = "changed_between" if change_source == "scan" else "event_logs_between"
    original = getattr(fake.state, name)

    def shifting(*args: Any) -> list[Any]:
        calls["n"] += 1
        rows = original(*args)
        return rows[:len(rows) - calls["n"] % 2]  # the total changes on every page (the newest row comes and goes)

    monkeypatch.setattr(fake.state, name, shifting)
    with pytest.raises(AirliftDagsterError, match="kept changing"):
        ticker.tick()
    assert ticker.cursor == before


def test_backlog_is_worked_off_in_bounded_ticks_exactly_once(instance: AirflowInstance, fake: FakeAirflow,
                                                            dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_defs(instance, max_rows_per_tick=200), dagster_instance)
    runs = [fake.state.add_run("dag_00000", start=ticker.now - timedelta(hours=5) + timedelta(minutes=2 * i)) for i in range(120)]
    ticks = 0
    rows_per_tick: list[int] = []
    while True:
        ticks += 1
        before = len(ticker.events)
        ticker.tick()
        rows_per_tick.append(len(ticker.events) - before)
        cursor = AirliftSensorCursor.parse(ticker.cursor)
        if (cursor.high_water is not None and cursor.high_water >= ticker.now - timedelta(minutes=2)) or ticks > 50:
            break
    assert ticks >= 4, "the per-tick budget split the backlog"
    assert ticker.counts() == Counter({(k, r.run_id): 1 for r in runs for k in ALL})
    assert len(ticker.cursor or "") < 4000


def test_task_rows_written_again_after_their_run_ended_still_come_first_unmarked_once(
    instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance
) -> None:
    """Airflow 3 can write a task's row again after its run ended (same state and end date): with a
    row budget that puts the run in an earlier window than its tasks, the tasks are read with the
    run, materialized before the DAG asset, not labelled marked, and not again when their rows come."""
    ticker = Ticker(_defs(instance, max_rows_per_tick=10), dagster_instance)
    runs = [fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=40 - 3 * i)) for i in range(8)]
    for run in runs:
        for ti in _tis(fake, run).values():
            fake.state.touch(ti, run.updated_at + timedelta(minutes=2))  # a later write, nothing else changes
    for _ in range(20):
        ticker.tick()
    assert ticker.counts() == Counter({(k, r.run_id): 1 for r in runs for k in ALL})
    for run in runs:
        mine = [k for k, r, _ in ticker.materializations() if r == run.run_id]
        assert mine == ALL, "every task asset before the DAG asset"
    assert not [e for e in ticker.events if isinstance(e, AssetMaterialization) and "Marked in Airflow" in e.metadata]


def test_migrated_or_not_is_decided_per_airflow_run_from_dagster_run_tags(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=9))
    other = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=8))
    rolled_back = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=7))
    # the DagsterOperator built task_001 of `run`; a Dagster run of ANOTHER instance with the same ids
    # does not count; the task was rolled back before `rolled_back` ran (no Dagster run): reported
    ticker.instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="a" * 8 + "-0000-0000-0000-000000000000", tags=dagster_run_tags(
        dag_id="dag_00000", task_id="task_001", run_id=run.run_id, try_number=1, instance_name="inst"), status=DagsterRunStatus.SUCCESS))
    ticker.instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id="b" * 8 + "-0000-0000-0000-000000000000", tags=dagster_run_tags(
        dag_id="dag_00000", task_id="task_001", run_id=other.run_id, try_number=1, instance_name="staging"), status=DagsterRunStatus.SUCCESS))
    ticker.tick()
    counts = ticker.counts()
    assert counts[("b", run.run_id)] == 0
    assert counts[("a", run.run_id)] == 1
    assert counts[("inst/dag/dag_00000", run.run_id)] == 1
    assert counts[("b", other.run_id)] == 1
    assert counts[("b", rolled_back.run_id)] == 1
    # the built try's check is the sensor's to evaluate (the operator's run does not execute Airlift's checks)
    checks = [e for e in ticker.events if isinstance(e, AssetCheckEvaluation) and e.check_name == TASK_RUN_CHECK_NAME
              and e.asset_key == AssetKey("b") and quote(run.run_id, safe="") in str(e.metadata["Airflow run"].value)]
    assert [c.passed for c in checks] == [True]


def test_two_instances_with_the_same_ids_stay_independent(fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    def client(name: str) -> AirflowInstance:
        return AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"), name=name,
                               retry_policy=RetryPolicy(max_attempts=2, sleep=lambda s: None))

    clock = Clock()

    def only_dag(name: str) -> Definitions:
        return build_defs_from_airflow_instance(
            airflow_instance=client(name), defs=dag_defs("dag_00000", task_defs("task_000", AssetSpec([name, "a"]))),
            sensor_settings=SensorSettings(clock=clock))

    staging = Ticker(only_dag("staging"), dagster_instance, "staging")
    prod = Ticker(only_dag("prod"), dagster_instance, "prod")
    run = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    staging.tick()
    prod.tick()
    assert staging.counts()[("staging/a", run.run_id)] == 1
    assert prod.counts()[("prod/a", run.run_id)] == 1
    assert prod.counts()[("prod/dag/dag_00000", run.run_id)] == 1


def test_dag_added_to_the_selector_later_gets_its_history(instance: AirflowInstance, fake: FakeAirflow,
                                                         dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    old = fake.state.add_run("dag_00001", start=NOW - timedelta(hours=2))
    without = Ticker(_defs(instance, clock, dag_selector_fn=lambda d: d.dag_id != "dag_00001"), dagster_instance)
    without.tick()
    assert not [m for m in without.materializations() if m[1] == old.run_id]
    with_it = Ticker(_defs(instance, clock), dagster_instance)
    with_it.cursor = without.cursor  # a code-location reload: same sensor, same cursor
    with_it.tick()
    with_it.tick()
    assert with_it.counts() == Counter({("inst/dag/dag_00001", old.run_id): 1})


def test_backfill_reads_the_tasks_of_its_runs_only_when_dags_share_run_ids(instance: AirflowInstance, fake: FakeAirflow,
                                                                          dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    start = NOW - timedelta(hours=2)
    finished = [fake.state.add_run(d, start=start) for d in ("dag_00001", "dag_00002")]
    other = fake.state.add_run("dag_00002", start=start + timedelta(minutes=5), state="running", task_state="running")
    fake.state.add_run("dag_00001", start=other.start_date)
    assert finished[0].run_id == finished[1].run_id
    without = Ticker(_defs(instance, clock, dag_selector_fn=lambda d: d.dag_id == "dag_00000"), dagster_instance)
    without.tick()
    with_them = Ticker(_defs(instance, clock), dagster_instance)
    with_them.cursor = without.cursor
    fake.request_log.clear()
    with_them.tick()
    read = {(d, r) for _, path, body in fake.request_log if path.endswith("/taskInstances/list")
            for d in body.get("dag_ids") or [] for r in body.get("dag_run_ids") or []}
    assert ("dag_00001", other.run_id) in read and ("dag_00002", other.run_id) not in read, "a run id is asked of its DAG only"
    assert with_them.counts()[("inst/dag/dag_00002", finished[1].run_id)] == 1


def test_dag_added_to_the_mapping_later_gets_its_task_history(instance: AirflowInstance, fake: FakeAirflow,
                                                             dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    old = fake.state.add_run("dag_00001", start=NOW - timedelta(hours=2))
    before = Ticker(_defs(instance, clock), dagster_instance)
    before.tick()
    assert before.counts() == Counter({("inst/dag/dag_00001", old.run_id): 1})
    after = _reloaded_with_task_of_dag_00001_mapped(instance, clock, dagster_instance, before.cursor)
    after.tick()
    after.tick()
    assert after.counts() == Counter({("late_mapped", old.run_id): 1}), "the DAG asset is not reported twice"


def _reloaded_with_task_of_dag_00001_mapped(instance: AirflowInstance, clock: Clock, dagster_instance: DagsterInstance,
                                            cursor: str | None) -> Ticker:
    """The same sensor (same cursor) after a code-location reload that maps task_002 of dag_00001."""
    mapped = Definitions.merge(_defs_body(), dag_defs("dag_00001", task_defs("task_002", AssetSpec("late_mapped"))))
    after = Ticker(build_defs_from_airflow_instance(airflow_instance=instance, defs=mapped,
                                                    sensor_settings=SensorSettings(clock=clock)), dagster_instance)
    after.cursor = cursor
    return after


def _defs_body() -> Definitions:
    return dag_defs("dag_00000", task_defs("task_000", AssetSpec("a")))


def test_running_runs_are_observed_once_and_failures_fail_checks(ticker: Ticker, fake: FakeAirflow) -> None:
    running = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=1), state="running", task_state="running")
    failed = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=8), state="failed", task_state="failed")
    result = ticker.tick()
    observations = [e for e in result.asset_events if isinstance(e, AssetObservation)]
    assert len(observations) == 1
    assert running.run_id.replace(":", "%3A").replace("+", "%2B") in observations[0].metadata["Airflow run"].value
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.asset_events if isinstance(e, AssetCheckEvaluation)}
    assert checks[("inst/dag/dag_00000", "airflow_dag_run_succeeded")].passed is False
    assert failed.run_id in (checks[("inst/dag/dag_00000", "airflow_dag_run_succeeded")].description or "")
    assert checks[("a", "airflow_task_succeeded")].passed is False
    assert not [e for e in result.asset_events if isinstance(e, AssetMaterialization)]


def test_cursor_is_small_whatever_the_run_rate(ticker: Ticker, fake: FakeAirflow) -> None:
    for i in range(300):
        fake.state.add_run("dag_00001", start=ticker.now - timedelta(minutes=50) + timedelta(seconds=5 * i), duration=timedelta(seconds=2))
    ticker.tick()
    assert len(ticker.cursor or "") < 1000
    assert '"v":2' in (ticker.cursor or "")
    with pytest.raises(AirliftDagsterError, match="reset the sensor's cursor"):
        AirliftSensorCursor.parse("garbage")
    upgraded = AirliftSensorCursor.parse('{"v":1,"hw":"2026-01-01T00:00:00+00:00","done":{},"running":[]}')
    assert upgraded.high_water is not None and upgraded.dags is None, "continues from the old mark, no backfill"
    assert AirliftSensorCursor.parse(upgraded.serialize()) == upgraded


# ------------------------------------------------------------------- the pure steps, one by one
def test_plan_tick_windows_sweep_and_backfill() -> None:
    settings = SensorSettings(history_window=timedelta(hours=3), lateness_window=timedelta(hours=1))
    now = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    first = plan_tick(Cursor(), now=now, coverage={"a": _digest("a"), "b": _digest("b")}, settings=settings)
    assert first.first_start and first.fresh == (now - timedelta(hours=3), now - settings.settle) and not first.backfill
    window = SweepWindow(now - timedelta(hours=2), now - timedelta(minutes=61), 3, 7)
    later = Cursor(high_water=now - timedelta(minutes=1), pending=[window], dags=frozenset({_digest("a")}))
    plan = plan_tick(later, now=now, coverage={"a": _digest("a"), "b": _digest("b")}, settings=settings)
    assert plan.fresh is not None and plan.fresh[0] > now - timedelta(minutes=1)
    assert plan.sweep == window
    assert plan.backfill == ("b",)
    not_yet = plan_tick(Cursor(high_water=now, pending=[SweepWindow(now - timedelta(minutes=30), now, 1, 1)], dags=frozenset({_digest("a")})),
                        now=now, coverage={"a": _digest("a")}, settings=settings)
    assert not_yet.sweep is None and not_yet.fresh is None


def _digest(dag_id: str) -> str:
    from airlift_dagster.sensor.settings import dag_digest

    return dag_digest(dag_id)


def test_advance_cursor_remembers_windows_and_merges_them() -> None:
    from airlift_dagster.sensor.fetch import Fetched

    settings = SensorSettings()
    now = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    cursor = Cursor(high_water=now - timedelta(hours=10), dags=frozenset({_digest("a")}))
    for i in range(100):
        plan = plan_tick(cursor, now=now - timedelta(hours=10) + timedelta(minutes=i + 1), coverage={"a": _digest("a")}, settings=settings)
        assert plan.fresh is not None
        cursor = advance_cursor(cursor, plan, Fetched(fresh=plan.fresh), coverage={"a": _digest("a")}, tick_started=1.0, settings=settings)
    assert len(cursor.pending) <= 32
    assert cursor.pending[0].lo < cursor.pending[-1].hi
    assert all(a.hi < b.lo for a, b in zip(cursor.pending, cursor.pending[1:], strict=False)), "windows stay disjoint and ordered"
    assert Cursor.parse(cursor.serialize()) == cursor


def test_the_ledger_keeps_new_and_unidentified_events_and_drops_repeats_within_a_tick(dagster_instance: DagsterInstance) -> None:
    from airlift_dagster.sensor.emissions import Emission
    from airlift_dagster.sensor.ledger import BuiltTries, settle_deliveries

    held_id = AirflowEventId("i", "d", "r", task_id="t", try_number=1)
    new_id = AirflowEventId("i", "d", "r", task_id="t", try_number=2)
    dagster_instance.report_runless_asset_event(AssetMaterialization("x", tags=held_id.tags()))
    held, new, twice = (AssetMaterialization("x", tags=held_id.tags()), AssetMaterialization("x", tags=new_id.tags()),
                        AssetMaterialization("x", tags=new_id.tags()))
    emissions = [Emission(held, held_id, NOW), Emission(new, new_id, NOW), Emission(twice, new_id, NOW),
                 Emission(AssetMaterialization("y"), None, None)]
    out = settle_deliveries(emissions, instance=dagster_instance, instance_name="i", built=BuiltTries(), floor=NOW)
    assert [e.event for e in out.kept] == [new, emissions[3].event]
    assert (out.held, out.repeated) == (1, 1)


def test_checks_are_evaluated_by_a_dagster_run_only_for_the_migrated_task(instance: AirflowInstance) -> None:
    from dagster import AssetSelection, materialize

    defs = _defs(instance)
    checks_def = next(c for c in defs.asset_checks or [] if any(k.name == "airflow_task_succeeded" for k in c.check_keys))
    keys: Callable[[Any], dict[str, bool]] = lambda result: {  # noqa: E731
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}
    with DagsterInstance.ephemeral() as dagster:
        manual = materialize([checks_def], instance=dagster, selection=AssetSelection.checks_for_assets(AssetKey("a")), raise_on_error=True)
        assert keys(manual) == {}, "a manual run does not pass Airflow's check"
        migrated = materialize([checks_def], instance=dagster, selection=AssetSelection.checks_for_assets(AssetKey("a")),
                               tags=dagster_run_tags(dag_id="dag_00000", task_id="task_000", run_id="r1", try_number=1, instance_name="inst"))
        assert keys(migrated) == {"a:airflow_task_succeeded": True}


def test_pushed_events_are_recognised_as_held() -> None:
    """An event pushed through Dagster's report endpoint (identity in metadata, no tags) counts as
    held, and an earlier sensor copy (identity in tags) does too; another instance's does not."""
    from airlift_dagster.sensor.emissions import dagster_metadata
    from airlift_dagster.sensor.ledger import read_held
    from airlift_protocol.events import dag_run_success_event, metadata_json
    from airlift_protocol.links import ui_links_for
    from airlift_protocol.models import ApiVersion

    links = ui_links_for(ApiVersion.V2, "http://af:8080")
    end = datetime(2026, 1, 1, tzinfo=timezone.utc)
    pushed = dag_run_success_event(instance_name="inst", links=links, dag_id="d", run_id="r1", run_type="manual",
                                   start_date=None, end_date=end)
    by_sensor = dag_run_success_event(instance_name="inst", links=links, dag_id="d", run_id="r2", run_type="manual",
                                      start_date=None, end_date=end)
    other = dag_run_success_event(instance_name="other", links=links, dag_id="d", run_id="r3", run_type="manual",
                                  start_date=None, end_date=end)
    with DagsterInstance.ephemeral() as dagster:
        # what the webserver's /report_asset_materialization/ stores: JSON metadata, no tags
        dagster.report_runless_asset_event(AssetMaterialization("dag_asset", metadata=metadata_json(pushed.metadata)))
        dagster.report_runless_asset_event(AssetMaterialization("dag_asset", metadata=dagster_metadata(by_sensor.metadata),
                                                                tags=by_sensor.tags()))
        dagster.report_runless_asset_event(AssetMaterialization("dag_asset", metadata=metadata_json(other.metadata)))
        held = read_held(dagster, "inst", {("materialization", AssetKey("dag_asset")): 0.0})
    assert {e.identity[0] for e in held.entries} == {pushed.event_id.key, by_sensor.event_id.key}


def test_events_pushed_in_the_settle_window_before_a_tick_are_not_emitted_again(ticker: Ticker, fake: FakeAirflow) -> None:
    """A push stored between the previous tick's upper bound (its start minus settle) and that tick's
    start is found: the sensor emits nothing twice."""
    import json
    import time

    from airlift_protocol.events import identity_metadata

    fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    ticker.tick()
    run2 = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50))
    pushed = [(AssetKey(key), AirflowEventId("inst", "dag_00000", run2.run_id, task_id=task_id, try_number=1))
              for key, task_id in (("a", "task_000"), ("b", "task_001"), ("c", "task_002"), ("c2", "task_002"))]
    pushed.append((AssetKey(["inst", "dag", "dag_00000"]),
                   AirflowEventId("inst", "dag_00000", run2.run_id, run_end_date=run2.end_date.isoformat())))  # type: ignore[union-attr]
    for key, event_id in pushed:  # as Dagster's report endpoint stores them: identity in metadata, no tags
        ticker.instance.report_runless_asset_event(
            AssetMaterialization(key, metadata={k: v.value for k, v in identity_metadata(event_id).items()}))
    cursor = json.loads(ticker.cursor or "{}")
    cursor["at"] = time.time() + 8  # the previous tick started 8 s after the pushes were stored
    ticker.cursor = json.dumps(cursor)
    result = ticker.tick()
    assert not [e for e in result.asset_events if isinstance(e, AssetMaterialization)]


# ------------------------------------------------ exactly once across paths and replays (the ledger)
def _store_at(instance: DagsterInstance, event: AssetMaterialization, when: datetime) -> None:
    """Store a runless materialization as stored at ``when`` (Dagster's clock): what a push did then."""
    from dagster import DagsterEvent, DagsterEventType
    from dagster._core.events import StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    instance.report_dagster_event(DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name=RUNLESS_JOB_NAME,
                                               event_specific_data=StepMaterializationData(event)),
                                  run_id=RUNLESS_RUN_ID, timestamp=when.timestamp())


def _push(ticker: Ticker, fake: FakeAirflow, run: FakeRun) -> None:
    """What push stores for a successful run, when each task and the run ended: identity in metadata, no tags."""
    from airlift_protocol.events import identity_metadata

    tis = _tis(fake, run)
    for key, task_id in (("a", "task_000"), ("b", "task_001"), ("c", "task_002"), ("c2", "task_002")):
        ti = tis[task_id]
        event_id = AirflowEventId("inst", "dag_00000", run.run_id, task_id=task_id, try_number=ti.try_number)
        _store_at(ticker.instance, AssetMaterialization(key, metadata={k: v.value for k, v in identity_metadata(event_id).items()}),
                  ti.end_date)
    event_id = AirflowEventId("inst", "dag_00000", run.run_id, run_end_date=run.end_date.isoformat())  # type: ignore[union-attr]
    _store_at(ticker.instance, AssetMaterialization(AssetKey(["inst", "dag", "dag_00000"]),
                                                    metadata={k: v.value for k, v in identity_metadata(event_id).items()}), run.end_date)


def test_pushed_events_of_a_backlog_larger_than_one_tick_are_not_emitted_again(instance: AirflowInstance, fake: FakeAirflow,
                                                                              dagster_instance: DagsterInstance) -> None:
    """The daemon stops for 30 minutes while push stores every success; the catch-up takes several
    ticks (row budget) and emits none of the pushed events again."""
    import json

    ticker = Ticker(_defs(instance, max_rows_per_tick=10), dagster_instance)
    ticker.tick()
    ticker.clock.now += timedelta(minutes=30)
    runs = [fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=29 - 4 * i)) for i in range(6)]
    for run in runs:
        _push(ticker, fake, run)
    ticks = 0
    while ticks < 20:
        started = ticker.now
        ticker.tick()
        ticks += 1
        cursor = json.loads(ticker.cursor or "{}")
        cursor["at"] = started.timestamp()  # the tick started on the sensor's clock (Dagster and Airflow agree)
        ticker.cursor = json.dumps(cursor)
        if AirliftSensorCursor.parse(ticker.cursor).high_water >= runs[-1].updated_at:  # type: ignore[operator]
            break
    assert ticks >= 3, "the backlog took more than one tick"
    assert ticker.materializations() == [], "every success was pushed already"


def test_a_row_in_both_the_backfill_and_the_fresh_window_is_emitted_once(instance: AirflowInstance, fake: FakeAirflow,
                                                                        dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    old = fake.state.add_run("dag_00001", start=NOW - timedelta(hours=2))
    before = Ticker(_defs(instance, clock), dagster_instance)
    before.tick()
    for row in [old, *_tis(fake, old).values()]:  # a note on the run and its tasks: their rows change, nothing else
        fake.state.touch(row, clock.now - timedelta(seconds=30))
    after = _reloaded_with_task_of_dag_00001_mapped(instance, clock, dagster_instance, before.cursor)
    after.tick()  # backfill and fresh window in one tick
    after.tick()
    assert after.counts() == Counter({("late_mapped", old.run_id): 1})


def test_a_crash_between_stored_events_and_saved_cursor_stores_no_check_evaluation_twice(ticker: Ticker, fake: FakeAirflow) -> None:
    failed = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5), state="failed", task_state="failed")
    running = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50), state="running", task_state="running")
    crashed = ticker.evaluate()
    ticker.store(crashed)  # stored, then the daemon dies before saving the cursor
    ticker.tick()  # same cursor as the crashed tick
    checks = Counter((e.asset_key.to_user_string(), e.check_name, e.passed) for e in ticker.events if isinstance(e, AssetCheckEvaluation))
    assert checks[("inst/dag/dag_00000", "airflow_dag_run_succeeded", False)] == 1
    assert checks[("a", "airflow_task_succeeded", False)] == 1
    assert set(checks.values()) == {1}, checks
    observations = [e for e in ticker.events if isinstance(e, AssetObservation)]
    assert len(observations) == 1 and running.run_id and failed.run_id
    for event in [*observations, *(e for e in ticker.events if isinstance(e, AssetCheckEvaluation))]:
        assert airflow_event_key_of(None, instance_name="inst", metadata=event.metadata), "every event carries its identity"


def test_a_failed_try_marked_success_later_still_gets_its_passing_check(ticker: Ticker, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5), state="failed", task_state="failed")
    ticker.tick()
    tis = _tis(fake, run)
    fake.state.touch(tis["task_000"], ticker.now - timedelta(seconds=30), state="success")
    result = ticker.tick()
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.asset_events if isinstance(e, AssetCheckEvaluation)}
    assert checks[("a", "airflow_task_succeeded")] is True
    assert ticker.counts()[("a", run.run_id)] == 1


def _operator_run(ticker: Ticker, run: FakeRun, *, task_id: str, try_number: int, max_tries: int, status: DagsterRunStatus,
                  instance_name: str = "inst") -> None:
    from airlift_protocol import operator_run_tags

    tags = operator_run_tags(instance_name=instance_name, dag_id=run.dag_id, task_id=task_id, run_id=run.run_id, try_number=try_number,
                             map_index=-1, location="defs", max_tries=max_tries)
    ticker.instance.add_run(DagsterRun(job_name="__ASSET_JOB", tags=tags, status=status))


def test_a_retry_that_reuses_an_earlier_tries_dagster_run_counts_as_built(ticker: Ticker, fake: FakeAirflow) -> None:
    reused, cleared, failed_only = (fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=m)) for m in (9, 8, 7))
    for run in (reused, cleared, failed_only):
        fake.state.touch(_tis(fake, run)["task_001"], _tis(fake, run)["task_001"].updated_at, try_number=2, max_tries=1)
    # try 1 launched the Dagster run; it failed, Dagster retried it (tags copied) and the retry succeeded;
    # Airflow's try 2 re-attached to it and succeeded
    _operator_run(ticker, reused, task_id="task_001", try_number=1, max_tries=1, status=DagsterRunStatus.FAILURE)
    _operator_run(ticker, reused, task_id="task_001", try_number=1, max_tries=1, status=DagsterRunStatus.SUCCESS)
    # a run of an earlier ATTEMPT (the task was cleared since: max_tries moved) does not count
    fake.state.touch(_tis(fake, cleared)["task_001"], _tis(fake, cleared)["task_001"].updated_at, max_tries=3)
    _operator_run(ticker, cleared, task_id="task_001", try_number=1, max_tries=1, status=DagsterRunStatus.SUCCESS)
    # a failed run of an earlier try does not stand for a later success
    _operator_run(ticker, failed_only, task_id="task_001", try_number=1, max_tries=1, status=DagsterRunStatus.FAILURE)
    ticker.tick()
    counts = ticker.counts()
    assert counts[("b", reused.run_id)] == 0
    assert counts[("b", cleared.run_id)] == 1
    assert counts[("b", failed_only.run_id)] == 1
    assert counts[("a", reused.run_id)] == 1


def test_the_fake_airflow_returns_max_tries_like_airflow(instance: AirflowInstance, fake: FakeAirflow) -> None:
    run = fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=5))
    fake.state.touch(_tis(fake, run)["task_001"], NOW, max_tries=2)
    tis = {t.task_id: t for t in instance.iter_task_instances(dag_ids=["dag_00000"], run_ids=[run.run_id])}
    assert (tis["task_001"].max_tries, tis["task_000"].max_tries) == (2, 0)


def test_a_migrated_run_tagged_with_an_unknown_instance_name_is_warned_about(ticker: Ticker, fake: FakeAirflow,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "'airflow'" in r.getMessage()]

    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    _operator_run(ticker, run, task_id="task_001", try_number=1, max_tries=0, status=DagsterRunStatus.SUCCESS, instance_name="airflow")
    with caplog.at_level("WARNING", logger="airlift_dagster"):
        ticker.tick()
    assert len(warned()) == 1 and "'inst'" in warned()[0] and "AIRLIFT_AIRFLOW_INSTANCE_NAME" in warned()[0], warned()
    caplog.clear()
    # the name of another peered instance (a DAG asset of that name exists) is not warned about
    ticker.instance.report_runless_asset_event(AssetMaterialization(["airflow", "dag", "dag_00000"]))
    other = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50))
    _operator_run(ticker, other, task_id="task_001", try_number=1, max_tries=0, status=DagsterRunStatus.SUCCESS, instance_name="airflow")
    with caplog.at_level("WARNING", logger="airlift_dagster"):
        ticker.tick()
    assert warned() == []


def test_the_ledger_reads_only_the_keys_at_stake(ticker: Ticker, fake: FakeAirflow, instance: AirflowInstance) -> None:
    """The dedupe read does not grow with unrelated events in Dagster's event log: the same tick
    evaluated before and after 1,000 materializations of other assets reads the same records."""
    from airlift_dagster.sensor import evaluate_tick

    fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    ticker.tick()
    fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50))

    def reads() -> tuple[int, int]:
        """Dagster records read and SQL statements issued (SQLite's per-connection PRAGMAs aside)."""
        from sqlalchemy import event

        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if not statement.lstrip().upper().startswith("PRAGMA"):
                statements.append(statement)

        engine = ticker.instance.event_log_storage._engine  # type: ignore[attr-defined]
        context = build_sensor_context(instance=ticker.instance, cursor=ticker.cursor)
        event.listen(engine, "before_cursor_execute", count)
        try:
            read = evaluate_tick(context=context, airflow_instance=instance, plan=_plan_of(ticker.defs), now=ticker.now).dagster_records_read
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return read, len(statements)

    quiet = reads()
    for i in range(1000):
        ticker.instance.report_runless_asset_event(AssetMaterialization(["unrelated", f"asset_{i % 50}"]))
    assert quiet[1] > 0 and reads() == quiet


@pytest.mark.parametrize("source_name", ["scan", "log"])
def test_a_swept_window_larger_than_the_row_budget_is_read_in_parts_over_ticks(instance: AirflowInstance, fake: FakeAirflow,
                                                                               source_name: str) -> None:
    """The second read of a window (merged windows can hold more rows than one tick reads) takes at
    most ``max_rows_per_tick`` rows per tick, with the fresh window, and the rest of it on later ticks
    (either change source; the audit-log source counts its rows and the task instances they name)."""
    from airlift_dagster.sensor.fetch import fetch_changes
    from airlift_dagster.sensor.sources import AuditLogSource, ScanSource

    settings = SensorSettings(max_rows_per_tick=10, lateness_window=timedelta(minutes=5))
    now = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    runs = [fake.state.add_run("dag_00000", start=now - timedelta(hours=2) + timedelta(minutes=i)) for i in range(10)]
    window = SweepWindow(now - timedelta(hours=3), now - timedelta(hours=1), rows=40, digest=0)
    cursor = Cursor(high_water=now - timedelta(minutes=2), pending=[window], dags=frozenset({_digest("dag_00000")}))
    coverage = {"dag_00000": _digest("dag_00000")}
    swept: set[str] = set()
    for _ in range(20):
        plan = plan_tick(cursor, now=now, coverage=coverage, settings=settings)
        if plan.sweep is None:
            break
        source = (ScanSource if source_name == "scan" else AuditLogSource)(instance, frozenset({"dag_00000"}))
        fetched = fetch_changes(instance, plan, source=source, settings=settings)
        # a window is sized by its own rows (audit-log rows for that source); what they name is read with them
        assert fetched.rows_listed <= settings.max_rows_per_tick * (1 if source_name == "scan" else 3)
        swept |= {r.run_id for r in fetched.sweep_runs} | {t.run_id for t in fetched.sweep_tis}
        cursor = advance_cursor(cursor, plan, fetched, coverage=coverage, tick_started=1.0, settings=settings)
        now += timedelta(seconds=30)
    assert swept == {r.run_id for r in runs}, "the whole window was read again, in parts"
    assert not cursor.pending or cursor.pending[0].lo > window.hi


@pytest.mark.parametrize("source_name", ["scan", "log"])
def test_a_backlog_moves_on_while_a_swept_window_is_read_in_parts(instance: AirflowInstance, fake: FakeAirflow,
                                                                  source_name: str) -> None:
    """After a pause both the second read of an older window and the fresh window hold more than a tick reads:
    the sweep takes half the budget first, so the fresh window moves on every tick (a backlog drains), and
    the sweep reads on with what the fresh window left; every run of both is read."""
    from airlift_dagster.sensor.fetch import fetch_changes
    from airlift_dagster.sensor.sources import AuditLogSource, ScanSource

    settings = SensorSettings(max_rows_per_tick=20, lateness_window=timedelta(minutes=5))
    now = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    old = [fake.state.add_run("dag_00000", start=now - timedelta(hours=2) + timedelta(minutes=i)) for i in range(10)]
    new = [fake.state.add_run("dag_00000", start=now - timedelta(minutes=50) + timedelta(minutes=i)) for i in range(10)]
    window = SweepWindow(now - timedelta(hours=3), now - timedelta(hours=1), rows=40, digest=0)
    cursor = Cursor(high_water=now - timedelta(hours=1), pending=[window], dags=frozenset({_digest("dag_00000")}))
    coverage = {"dag_00000": _digest("dag_00000")}
    swept: set[str] = set()
    fresh: set[str] = set()
    for tick in range(40):
        plan = plan_tick(cursor, now=now, coverage=coverage, settings=settings)
        if plan.sweep is None and plan.fresh is not None and cursor.high_water is not None and cursor.high_water >= plan.fresh[1]:
            break
        source = (ScanSource if source_name == "scan" else AuditLogSource)(instance, frozenset({"dag_00000"}))
        fetched = fetch_changes(instance, plan, source=source, settings=settings)
        assert fetched.rows_listed <= settings.max_rows_per_tick * (1 if source_name == "scan" else 3)
        if plan.sweep is not None and {r.run_id for r in new} - fresh:
            assert fetched.fresh is not None and fetched.fresh_listed > 0, f"tick {tick}: the fresh window waits for the sweep"
        swept |= {r.run_id for r in fetched.sweep_runs} | {t.run_id for t in fetched.sweep_tis}
        fresh |= {r.run_id for r in fetched.fresh_runs} | {t.run_id for t in fetched.fresh_tis}
        cursor = advance_cursor(cursor, plan, fetched, coverage=coverage, tick_started=1.0, settings=settings)
        now += timedelta(seconds=30)
    assert swept == {r.run_id for r in old}, "the whole older window was read again, in parts"
    assert {r.run_id for r in new} <= fresh, "the backlog was read"


def test_an_unchanged_window_is_read_again_light_within_the_budget(instance: AirflowInstance, fake: FakeAirflow) -> None:
    """A window's second read with the audit log lists its rows and asks for none of the task instances its try-end
    rows name: it is sized by what it lists, so a window whose rows fit but whose task instances would not is read
    again in one tick, found unchanged, and reads no task instance; changed, it would read them all within the budget."""
    from airlift_dagster.sensor.fetch import fetch_changes
    from airlift_dagster.sensor.sources import AuditLogSource

    now = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    for i in range(3):
        fake.state.add_run("dag_00000", start=now - timedelta(minutes=20) + timedelta(minutes=i))
    coverage = {"dag_00000": _digest("dag_00000")}
    source = AuditLogSource(instance, frozenset({"dag_00000"}))
    rows = source.read(now - timedelta(minutes=30), now - timedelta(minutes=1), None, light=True)
    assert not isinstance(rows, TooManyRows)
    tries = len(rows.unread)
    assert rows.listed <= 15 < rows.listed + tries, (rows.listed, tries)  # the rows fit in half of 30, not with their tasks
    settings = SensorSettings(max_rows_per_tick=30, lateness_window=timedelta(minutes=5))
    cursor = Cursor(high_water=now - timedelta(minutes=30), dags=frozenset(coverage.values()))
    plan = plan_tick(cursor, now=now, coverage=coverage, settings=settings)
    first = fetch_changes(instance, plan, source=source, settings=settings)
    cursor = advance_cursor(cursor, plan, first, coverage=coverage, tick_started=1.0, settings=settings)
    assert [w.hi for w in cursor.pending] == [first.fresh[1]] if first.fresh else False
    later = now + timedelta(minutes=10)
    plan = plan_tick(cursor, now=later, coverage=coverage, settings=settings)
    assert plan.sweep is not None and plan.fresh is not None
    again = fetch_changes(instance, plan, source=source, settings=settings)
    assert again.sweep_read == (plan.sweep.lo, plan.sweep.hi), "read again whole, in one tick"
    assert not again.sweep_changed and again.sweep_tis == [] and again.rows_listed <= settings.max_rows_per_tick
    # changed (another signature), its task instances would not fit with its rows: the window is read again whole,
    # sized to the room (a part of it, every row of that part)
    from airlift_dagster.sensor.fetch import read_sweep

    lo, hi = plan.sweep.lo, plan.sweep.hi
    end, part, changed = read_sweep(source, lo, hi, 15, first_read=SweepWindow(lo, hi, rows=1, digest=0))
    assert changed and end < hi and part.listed <= 15 and part.tis and not part.unread, (end, part)


def test_a_backfill_larger_than_the_row_budget_is_read_in_parts_over_ticks(instance: AirflowInstance, fake: FakeAirflow) -> None:
    """A DAG new to the mapping whose history holds more rows than ``max_rows_per_tick``: each tick
    reads at most the budget plus one request group, the next tick resumes after the last end date
    read (runs ending in the same instant are read together), and every run is read exactly once."""
    from airlift_dagster.sensor.fetch import fetch_changes
    from airlift_dagster.sensor.sources import AuditLogSource

    settings = SensorSettings(max_rows_per_tick=40)
    now = datetime(2026, 1, 2, 12, tzinfo=timezone.utc)
    start = now - timedelta(hours=20)
    runs = [fake.state.add_run("dag_00001", start=start + timedelta(minutes=5 * i)) for i in range(60)]
    # two more runs ending in the same instant (4 rows each: the run and its 3 tasks)
    twins = [fake.state.add_run("dag_00001", start=start + timedelta(hours=6, seconds=s), duration=timedelta(seconds=60 - s))
             for s in (1, 31)]
    assert twins[0].end_date == twins[1].end_date
    from airlift_dagster.sensor.settings import dag_digest

    coverage = {"dag_00000": _digest("dag_00000"), "dag_00001": dag_digest("dag_00001", ["task_002"])}
    cursor = Cursor(high_water=now - timedelta(minutes=2), dags=frozenset({_digest("dag_00000"), _digest("dag_00001")}))
    read: list[str] = []
    ticks = 0
    while ticks < 30:
        plan = plan_tick(cursor, now=now, coverage=coverage, settings=settings)
        if not plan.backfill:
            break
        ticks += 1
        fetched = fetch_changes(instance, plan, source=AuditLogSource(instance, frozenset(coverage)), settings=settings)
        assert fetched.rows_listed <= settings.max_rows_per_tick + 4 * 10, "the budget, and at most one request group more"
        read += [r.run_id for r in fetched.backfill_runs]
        this_tick = {r.run_id for r in fetched.backfill_runs}
        assert len(this_tick & {t.run_id for t in twins}) in (0, 2), "runs ending together are read in the same tick"
        assert {t.run_id for t in fetched.backfill_tis} == {r.run_id for r in fetched.backfill_runs}, "each run with its tasks"
        cursor = advance_cursor(cursor, plan, fetched, coverage=coverage, tick_started=1.0, settings=settings)
        assert AirliftSensorCursor.parse(cursor.serialize()) == cursor
        now += timedelta(seconds=30)
    assert ticks >= 6, f"the 248 rows took {ticks} ticks of at most 40 rows (+ one group)"
    assert sorted(read) == sorted(r.run_id for r in [*runs, *twins]), "every run read once"
    assert cursor.backfilling is None and coverage["dag_00001"] in (cursor.dags or ())


def test_a_newly_mapped_dag_backfilled_over_several_ticks_reports_each_try_once(instance: AirflowInstance, fake: FakeAirflow,
                                                                                dagster_instance: DagsterInstance) -> None:
    clock = Clock()
    runs = [fake.state.add_run("dag_00001", start=NOW - timedelta(hours=20) + timedelta(minutes=10 * i)) for i in range(40)]
    before = Ticker(_defs(instance, clock, max_rows_per_tick=30), dagster_instance)
    for _ in range(40):  # 30 rows a tick: about 4 runs of 3 tries (the audit-log rows, the tries and their run)
        before.tick()
    assert before.counts() == Counter({("inst/dag/dag_00001", r.run_id): 1 for r in runs})
    mapped = Definitions.merge(_defs_body(), dag_defs("dag_00001", task_defs("task_002", AssetSpec("late_mapped"))))
    after = Ticker(build_defs_from_airflow_instance(airflow_instance=instance, defs=mapped,
                                                    sensor_settings=SensorSettings(clock=clock, max_rows_per_tick=30)),
                   dagster_instance)
    after.cursor = before.cursor
    partial = 0
    for _ in range(15):
        after.tick()
        partial += AirliftSensorCursor.parse(after.cursor).backfilling is not None
    assert partial >= 3, "the history took several ticks"
    assert after.counts() == Counter({("late_mapped", r.run_id): 1 for r in runs}), "each try once, the DAG asset not again"


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_a_quiet_tick_asks_airflow_two_requests(instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance,
                                                change_source: str) -> None:
    """The new window is sized by the counts its lists' first pages carry, with no count request of
    its own: a tick with nothing new sends two requests. Scan: one runs page and one task-instance
    page. Audit log: one page of it, and one runs page."""
    ticker = Ticker(_defs(instance, change_source=change_source), dagster_instance)
    fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    ticker.tick()
    fake.request_log.clear()
    ticker.tick()
    paths = [p for _, p, _ in fake.request_log]
    assert len(paths) == 2 and not [p for p in paths if "limit=1&" in p or p.endswith("limit=1")], paths
    assert len([p for p in paths if "eventLogs" in p]) == (0 if change_source == "scan" else 1), paths
    assert len([p for p in paths if "taskInstances" in p]) == (1 if change_source == "scan" else 0), paths


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_the_late_commit_audit_counts_at_most_once_per_audit_interval(instance: AirflowInstance, fake: FakeAirflow,
                                                                      dagster_instance: DagsterInstance, change_source: str) -> None:
    """The settled windows are counted again (two count requests) at most once per ``audit_interval``
    of the sensor's clock (5 minutes by default; the ticks here are a minute apart), and a commit later
    than the lateness window is still found, within that interval."""
    ticker = Ticker(_defs(instance, lateness_window=timedelta(minutes=5), change_source=change_source), dagster_instance)
    early = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=20))
    for _ in range(8):
        ticker.tick()
    assert Cursor.parse(ticker.cursor).settled
    counted = "updated_at" if change_source == "scan" else "eventLogs"
    fake.request_log.clear()
    audits = []
    for i in range(12):
        before = len(fake.request_log)
        ticker.tick()
        counts = [p for _, p, _ in fake.request_log[before:] if counted in p and ("limit=1&" in p or p.endswith("limit=1"))]
        if counts:
            audits.append(i)
    assert len(audits) in (2, 3) and all(b - a >= 5 for a, b in itertools.pairwise(audits)), audits
    late = fake.state.add_run("dag_00000", start=ticker.now - timedelta(hours=20),
                              committed_at=Cursor.parse(ticker.cursor).settled[0].lo + timedelta(seconds=1))
    for _ in range(5):
        ticker.tick()
    assert ticker.counts() == Counter({(k, early.run_id): 1 for k in ALL} | {(k, late.run_id): 1 for k in ALL})


# ------------------------------------------------------------------------------------- change sources
# The audit log (the default) reads no task instance or run by ``updated_at``, follows the runs the
# scheduler ends without an audit-log row, falls back to the scan with a warning when the audit log is
# refused (or fails the tick when told to insist); a switch between the sources repeats and loses nothing.

@pytest.fixture(autouse=True)
def _audit_log_tried_again() -> None:
    """Each test starts with the audit log not known to be refused (the sensor remembers a refusal per process)."""
    from airlift_dagster.sensor import tick as tick_module

    tick_module._scan_until.clear()


def _scans(fake: FakeAirflow) -> list[str]:
    """Requests filtering task instances on ``updated_at`` (a scan of Airflow's largest table)."""
    return [p for _, p, _ in fake.request_log if "updated_at" in p and "taskInstances" in p]


def test_the_audit_log_source_reads_no_task_instance_by_updated_at_and_reports_each_event_once(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_defs(instance), dagster_instance)
    runs = [fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=30 - 5 * i)) for i in range(3)]
    for _ in range(10):
        ticker.tick()
    assert Cursor.parse(ticker.cursor).source == "log"
    assert ticker.counts() == Counter({(k, r.run_id): 1 for k in ALL for r in runs})
    assert not _scans(fake), "no list filters task_instance on updated_at"


def test_a_run_the_scheduler_ends_after_its_tasks_were_read_is_reported_once(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    """The scheduler writes a run's end without an audit-log row: the run's own change is read."""
    ticker = Ticker(_defs(instance), dagster_instance)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=3), state="running", task_state="success")
    ticker.tick()
    assert ticker.counts() == Counter({(k, run.run_id): 1 for k in ["a", "b", "c", "c2"]})
    ticker.tick()
    fake.state.touch(run, ticker.now - timedelta(seconds=30), state="success", end_date=ticker.now - timedelta(seconds=30))
    for _ in range(3):
        ticker.tick()
    assert ticker.counts() == Counter({(k, run.run_id): 1 for k in ALL})


def _tasks_that_never_ran(fake: FakeAirflow, ticker: Ticker) -> FakeRun:
    """A run of ``dag_00000`` that started and succeeded in the last minute, its tasks succeeded by the
    scheduler without running (``EmptyOperator``: no try row)."""
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50), state="running", task_state="queued")
    at = ticker.now - timedelta(seconds=45)
    for i, ti in enumerate(fake.state.tis_of_run(run)):
        fake.state.touch(ti, at + timedelta(seconds=i), by_scheduler=True, state="success", start_date=at + timedelta(seconds=i),
                         end_date=at + timedelta(seconds=i))
    fake.state.touch(run, at + timedelta(seconds=5), state="success", end_date=at + timedelta(seconds=5))
    return run


def test_tasks_the_scheduler_succeeds_without_running_them_are_reported_with_their_run(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    """Airflow's scheduler succeeds an ``EmptyOperator`` without running it: no audit-log row; a run
    made only of such tasks, started and ended between two ticks, still reports each task once."""
    ticker = Ticker(_defs(instance), dagster_instance)
    ticker.tick()
    run = _tasks_that_never_ran(fake, ticker)
    assert not [e for e in fake.state.event_logs if e.run_id == run.run_id], "the scheduler wrote no row"
    for _ in range(3):
        ticker.tick()
    assert ticker.counts() == Counter({(k, run.run_id): 1 for k in ALL})


def test_a_run_cleared_and_rerun_between_two_ticks_reports_the_new_tries_and_the_new_success(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_defs(instance), dagster_instance)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=10))
    ticker.tick()
    tis = _tis(fake, run)
    at = ticker.now - timedelta(seconds=50)
    fake.state.touch(run, at, state="queued", end_date=None)
    ti = tis["task_002"]
    fake.state.touch(ti, at, state=None, end_date=None)  # the clear (Airflow 2 names no run in its row)
    fake.state.touch(ti, at + timedelta(seconds=10), state="success", try_number=ti.try_number + 1,
                     start_date=at + timedelta(seconds=5), end_date=at + timedelta(seconds=10))
    fake.state.touch(run, at + timedelta(seconds=20), state="success", end_date=at + timedelta(seconds=20))
    for _ in range(3):
        ticker.tick()
    counts = ticker.counts()
    assert counts[("c", run.run_id)] == 2 and counts[("c2", run.run_id)] == 2, "the new try of task_002"
    assert counts[("a", run.run_id)] == 1 and counts[("b", run.run_id)] == 1, "tasks not cleared: not again"
    assert counts[("inst/dag/dag_00000", run.run_id)] == 2, "the run's second success"


# ------------------------------------------------------------------------------------- run events
# Where airlift-airflow's listener writes a row per DAG-run start and end, the windows after the first
# such row read their runs from those rows (by key), not by updated_at; a run found ended without its
# row sends the sensor back to the scan, losing nothing.

@pytest.fixture
def listener(fake: FakeAirflow) -> FakeAirflow:
    """The fake Airflow's scheduler runs the run-event listener."""
    fake.state.run_events = True
    return fake


def _listening(instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> tuple[Ticker, Callable[[], Counter]]:
    """A ticker that found the listener's rows (a run two hours ago) and read past them, and the
    counts of what it reported since (that run's left out)."""
    ticker = Ticker(_defs(instance), dagster_instance)
    first = fake.state.add_run("dag_00000", start=ticker.now - timedelta(hours=2))
    for _ in range(2):
        ticker.tick()
    assert Cursor.parse(ticker.cursor).listening is not None
    return ticker, lambda: Counter({k: n for k, n in ticker.counts().items() if k[1] != first.run_id})


def _reported_once_without_a_scan(ticker: Ticker, counts: Callable[[], Counter], run: FakeRun, fake: FakeAirflow, since: int) -> None:
    """Three more ticks report each asset of ``run`` once, and no request since ``since`` scanned ``dag_run``."""
    for _ in range(3):
        ticker.tick()
    assert counts() == Counter({(k, run.run_id): 1 for k in ALL})
    assert not _run_scans(fake, since)


def _run_scans(fake: FakeAirflow, since: int = 0) -> list[str]:
    """Requests filtering DAG runs on ``updated_at`` (a scan of ``dag_run``)."""
    return [p for _, p, _ in fake.request_log[since:] if "updated_at" in p and "dagRuns" in p and "taskInstances" not in p]


def test_the_fake_writes_the_run_events_airlift_airflow_writes() -> None:
    from airlift_protocol import RUN_EVENTS
    from airlift_testing import fake_airflow

    assert (fake_airflow.RUN_RUNNING, fake_airflow.RUN_SUCCESS, fake_airflow.RUN_FAILED) == RUN_EVENTS


def test_a_change_of_listening_reads_again_only_the_windows_read_the_other_way() -> None:
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    minute = timedelta(minutes=1)
    windows = [SweepWindow(t + i * minute, t + (i + 1) * minute - timedelta(microseconds=1), 10 + i, 7 * i) for i in range(4)]
    settled = [SettledWindow(t - 2 * minute, t - minute, 5), SettledWindow(t - minute, t - timedelta(microseconds=1), 6)]
    cursor = Cursor(high_water=t + 4 * minute, pending=windows, settled=settled, audited_at=t)
    heard = cursor.with_listening(t + 90 * timedelta(seconds=1))  # windows 2 and 3 start after it
    assert heard.pending[:2] == windows[:2] and heard.settled == settled and heard.audited_at == t
    assert [(w.rows, w.digest) for w in heard.pending[2:]] == [(-1, 0), (-1, 0)], "read again, as changed"
    lost = heard.with_listening(None, unheard=t + 5 * minute)
    assert lost.pending[:2] == windows[:2] and [w.rows for w in lost.pending[2:]] == [-1, -1] and lost.unheard == t + 5 * minute
    early = cursor.with_listening(t - 90 * timedelta(seconds=1))  # the second settled window too
    assert early.settled == settled[:1] and early.audited_at is None and all(w.rows == -1 for w in early.pending)


def test_run_events_replace_the_scan_of_dag_run_and_report_each_event_once(
        instance: AirflowInstance, listener: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    fake = listener
    ticker = Ticker(_defs(instance), dagster_instance)
    runs = [fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=30 - 5 * i)) for i in range(3)]
    ticker.tick()  # reads the run-event rows; its window starts before the earliest: scanned
    cursor = Cursor.parse(ticker.cursor)
    assert cursor.listening == runs[0].start_date and AirliftSensorCursor.parse(cursor.serialize()) == cursor
    since = len(fake.request_log)
    runs.append(fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=1), duration=timedelta(seconds=20)))
    failed = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=50), duration=timedelta(seconds=10), state="failed",
                                task_state="failed")
    for _ in range(10):
        ticker.tick()
    assert ticker.counts() == Counter({(k, r.run_id): 1 for k in ALL for r in runs}), "nothing of the failed run"
    assert not _run_scans(fake, since), "no list filters dag_run on updated_at"
    assert not [k for k, r in ticker.counts() if r == failed.run_id]
    fake.request_log.clear()
    ticker.tick()
    paths = [p for _, p, _ in fake.request_log]
    assert len(paths) == 1 and "eventLogs" in paths[0], f"a quiet tick reads one page of the audit log: {paths}"


def test_with_run_events_a_run_the_scheduler_ends_after_its_tasks_were_read_is_reported_once(
        instance: AirflowInstance, listener: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    fake = listener
    ticker, counts = _listening(instance, fake, dagster_instance)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=65), state="running", task_state="success")
    ticker.tick()
    assert counts() == Counter({(k, run.run_id): 1 for k in ["a", "b", "c", "c2"]})
    ticker.tick()
    since = len(fake.request_log)
    fake.state.touch(run, ticker.now - timedelta(seconds=30), state="success", end_date=ticker.now - timedelta(seconds=30))
    _reported_once_without_a_scan(ticker, counts, run, fake, since)


def test_with_run_events_a_run_of_tasks_that_never_ran_is_reported_once(
        instance: AirflowInstance, listener: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    """``EmptyOperator`` tasks only: the scheduler writes no try row; the listener's rows name the run."""
    fake = listener
    ticker, counts = _listening(instance, fake, dagster_instance)
    since = len(fake.request_log)
    run = _tasks_that_never_ran(fake, ticker)
    assert {e.event for e in fake.state.event_logs if e.run_id == run.run_id} == {"airlift.run.running", "airlift.run.success"}
    _reported_once_without_a_scan(ticker, counts, run, fake, since)


def test_with_run_events_a_run_cleared_and_rerun_reports_the_new_success_and_a_deleted_run_its_old_one(
        instance: AirflowInstance, listener: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    fake = listener
    ticker, counts = _listening(instance, fake, dagster_instance)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=1), duration=timedelta(seconds=20))
    gone = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=55), duration=timedelta(seconds=5))
    fake.state.runs.remove(gone)  # deleted after its rows were written: its row still carries its success
    fake.state.log_event(FakeEventLog(ticker.now - timedelta(seconds=45), "airlift.run.success", dag_id="dag_00000",
                                      run_id="deleted__run", owner="airlift"))  # a row carrying no run: read by key, not found
    ticker.tick()
    tis = _tis(fake, run)
    at = ticker.now - timedelta(seconds=50)
    fake.state.touch(run, at, state="queued", end_date=None)
    ti = tis["task_002"]
    fake.state.touch(ti, at, state=None, end_date=None)
    fake.state.touch(ti, at + timedelta(seconds=10), state="success", try_number=ti.try_number + 1,
                     start_date=at + timedelta(seconds=5), end_date=at + timedelta(seconds=10))
    fake.state.touch(run, at + timedelta(seconds=20), state="success", end_date=at + timedelta(seconds=20))
    for _ in range(3):
        ticker.tick()
    seen = counts()
    assert seen[("c", run.run_id)] == 2 and seen[("a", run.run_id)] == 1
    assert seen[("inst/dag/dag_00000", run.run_id)] == 2, "the run's second success"
    assert seen[("inst/dag/dag_00000", gone.run_id)] == 1, "history: the success happened before the run was deleted"
    assert not [k for k in seen if k[1] == "deleted__run"]


def test_with_run_events_and_the_run_mirror_a_started_run_shows_while_it_runs(
        instance: AirflowInstance, listener: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    """Mirrored runs need a run's start: the run-event rows of starts are read too (else only of ends)."""
    from dagster import DagsterRunStatus

    from airlift_dagster.run_mirror import mirrored_run_id

    fake = listener
    ticker = Ticker(_defs(instance, mirror_runs=True), dagster_instance)
    fake.state.add_run("dag_00000", start=ticker.now - timedelta(hours=2))
    for _ in range(2):
        ticker.tick()
    assert Cursor.parse(ticker.cursor).listening is not None
    since = len(fake.request_log)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(seconds=40), state="running", task_state="queued")
    ticker.tick()
    mirrored = dagster_instance.get_run_by_id(mirrored_run_id("inst", "dag_00000", run.run_id))
    assert mirrored is not None and mirrored.status == DagsterRunStatus.STARTED
    fake.state.touch(run, ticker.now - timedelta(seconds=30), state="failed", end_date=ticker.now - timedelta(seconds=30))
    for _ in range(2):
        ticker.tick()
    mirrored = dagster_instance.get_run_by_id(mirrored_run_id("inst", "dag_00000", run.run_id))
    assert mirrored is not None and mirrored.status == DagsterRunStatus.FAILURE
    assert not _run_scans(fake, since)


def test_a_run_ended_without_its_run_event_row_sends_the_sensor_back_to_the_scan(
        instance: AirflowInstance, listener: FakeAirflow, dagster_instance: DagsterInstance,
        caplog: pytest.LogCaptureFixture) -> None:
    """The listener stops (airlift-airflow removed from the scheduler): the first run ending without
    its row is found by the check, the tick reads runs by scan, nothing is lost, and rows written
    before that time are not trusted again."""
    fake = listener
    ticker = Ticker(_defs(instance), dagster_instance)
    runs = [fake.state.add_run("dag_00000", start=ticker.now - timedelta(hours=2))]
    for _ in range(2):
        ticker.tick()
    assert Cursor.parse(ticker.cursor).listening is not None
    fake.state.run_events = False
    runs.append(fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=1), duration=timedelta(seconds=20)))
    since = len(fake.request_log)
    with caplog.at_level("WARNING", logger="airlift_dagster"):
        for _ in range(3):
            ticker.tick()
    assert "has no run-event row for it" in caplog.text and "reads runs by updated_at instead" in caplog.text, caplog.text
    cursor = Cursor.parse(ticker.cursor)
    assert cursor.listening is None and cursor.unheard is not None
    assert _run_scans(fake, since), "runs are read by scan again"
    assert ticker.counts() == Counter({(k, r.run_id): 1 for k in ALL for r in runs})
    fake.state.run_events = True  # the listener back: only rows written after the gap are trusted
    runs.append(fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=1), duration=timedelta(seconds=20)))
    for _ in range(3):
        ticker.tick()
    cursor = Cursor.parse(ticker.cursor)
    assert cursor.listening is not None and cursor.unheard is not None and cursor.listening > cursor.unheard
    assert ticker.counts() == Counter({(k, r.run_id): 1 for k in ALL for r in runs})


@pytest.mark.parametrize("readable_first", [False, True], ids=["scan-then-log", "log-then-scan"])
def test_a_switch_between_sources_repeats_and_loses_nothing(instance: AirflowInstance, fake: FakeAirflow,
                                                            dagster_instance: DagsterInstance, readable_first: bool) -> None:
    """The audit log refused (a role change), then allowed again, or the other way round, while runs
    come and go, one of them running across the switch."""
    ticker = Ticker(_defs(instance), dagster_instance)
    fake.audit_log_readable = readable_first
    runs = [fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=20))]
    across = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=2), state="running", task_state="success")
    for _ in range(3):
        ticker.tick()
    fake.audit_log_readable = not readable_first
    from airlift_dagster.sensor import tick as tick_module

    tick_module._scan_until.clear()  # as when the retry interval has passed
    at = ticker.now - timedelta(seconds=40)
    fake.state.touch(across, at, state="success", end_date=at)
    runs.append(fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=1), duration=timedelta(seconds=20)))
    for _ in range(4):
        ticker.tick()
    runs.append(fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=1), duration=timedelta(seconds=20)))
    for _ in range(3):
        ticker.tick()
    expected = Counter({(k, r.run_id): 1 for k in ALL for r in [*runs, across]})
    assert ticker.counts() == expected
    assert Cursor.parse(ticker.cursor).source == ("scan" if readable_first else "log")


def test_a_refused_audit_log_falls_back_to_the_scan_with_a_warning_naming_the_permission(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance, caplog: pytest.LogCaptureFixture) -> None:
    fake.audit_log_readable = False
    ticker = Ticker(_defs(instance), dagster_instance)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    with caplog.at_level("WARNING", logger="airlift_dagster"):
        ticker.tick()
    assert "audit log cannot be read" in caplog.text and ("Audit Logs" in caplog.text or "AUDIT_LOG" in caplog.text), caplog.text
    before = len(fake.request_log)
    ticker.tick()
    assert not [p for _, p, _ in fake.request_log[before:] if "eventLogs" in p], "not asked again before the retry interval"
    assert ticker.counts() == Counter({(k, run.run_id): 1 for k in ALL})
    assert Cursor.parse(ticker.cursor).source == "scan"


def test_insisting_on_the_audit_log_fails_the_tick_and_keeps_the_cursor(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    ticker = Ticker(_defs(instance, change_source="audit_log"), dagster_instance)
    fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
    ticker.tick()
    before = ticker.cursor
    fake.audit_log_readable = False
    with pytest.raises(AirliftDagsterError, match="change_source='audit_log'.*cursor did not move"):
        ticker.tick()
    assert ticker.cursor == before


def test_airflow_before_2_9_is_scanned(dagster_instance: DagsterInstance, caplog: pytest.LogCaptureFixture) -> None:
    with FakeAirflow(FakeAirflowState.generate(dags=3, tasks_per_dag=3), generation=2) as fake:
        fake.airflow_version = "2.8.4"
        instance = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"),
                                   name="inst", retry_policy=RetryPolicy(max_attempts=2, sleep=lambda s: None))
        ticker = Ticker(_defs(instance), dagster_instance)
        run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=5))
        with caplog.at_level("WARNING", logger="airlift_dagster"):
            for _ in range(2):
                ticker.tick()
        assert "2.8.4" in caplog.text and "2.9 or later" in caplog.text, caplog.text
        assert ticker.counts() == Counter({(k, run.run_id): 1 for k in ALL})
        assert not [p for _, p, _ in fake.request_log if "eventLogs" in p], "the release is known from /version"


def test_change_source_is_checked() -> None:
    from airlift_dagster.sensor import SensorSettings

    with pytest.raises(AirliftDagsterError, match="change_source must be one of 'auto', 'audit_log', 'scan', got 'log'"):
        SensorSettings(change_source="log")


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_tasks_the_scheduler_fails_upstream_get_their_failing_check(instance: AirflowInstance, fake: FakeAirflow,
                                                                    dagster_instance: DagsterInstance, change_source: str) -> None:
    """``upstream_failed`` is set by the scheduler without an audit-log row: the audit-log source
    reads such task instances with their run once it ends, so both sources report the same checks."""
    ticker = Ticker(_defs(instance, change_source=change_source), dagster_instance)
    run = fake.state.add_run("dag_00000", start=ticker.now - timedelta(minutes=2), state="running", task_state="queued")
    tis = _tis(fake, run)
    at = ticker.now - timedelta(seconds=90)
    fake.state.touch(tis["task_000"], at, state="failed", try_number=1, start_date=at - timedelta(seconds=5), end_date=at)
    for i, task_id in enumerate(["task_001", "task_002"]):
        fake.state.touch(tis[task_id], at + timedelta(seconds=1 + i), by_scheduler=True, state="upstream_failed",
                         end_date=at + timedelta(seconds=1 + i))
    fake.state.touch(run, at + timedelta(seconds=3), state="failed", end_date=at + timedelta(seconds=3))
    for _ in range(3):
        ticker.tick()
    failing = Counter((e.asset_key.to_user_string(), str(e.metadata["Task state"].value)) for e in ticker.events
                      if isinstance(e, AssetCheckEvaluation) and e.check_name == TASK_RUN_CHECK_NAME and not e.passed)
    assert failing == Counter({("a", "failed"): 1, ("b", "upstream_failed"): 1, ("c", "upstream_failed"): 1,
                               ("c2", "upstream_failed"): 1}), failing


# ------------------------------------------------------------------------------------- backlogs
# After a pause longer than the lateness window, a window is read once (every commit the second read
# would wait for is visible by then), sized from the last window's density and cut to the share of
# its count that fits (no halving of a day of backlog), and the first read of a tick is never of the
# whole backlog.

def _list_windows(fake: FakeAirflow, start: int, needle: str) -> list[tuple[datetime, datetime]]:
    """The time windows of the list requests (paths holding ``needle``) sent since ``start``."""
    out = []
    for _, path, _ in fake.request_log[start:]:
        query = parse_qs(urlsplit(path).query)
        if needle in path:
            lo, hi = (query.get("updated_at_gte") or query["after"])[0], (query.get("updated_at_lte") or query["before"])[0]
            out.append((datetime.fromisoformat(lo), datetime.fromisoformat(hi)))
    return out


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_a_backlog_older_than_the_lateness_window_is_read_once_in_sized_windows(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance, change_source: str) -> None:
    clock = Clock()
    clock.now = NOW - timedelta(hours=24, minutes=20)  # the day of backlog ends now (Dagster's clock: the ledger's reads)
    ticker = Ticker(_defs(instance, clock, max_rows_per_tick=60, change_source=change_source), dagster_instance)
    steady = [fake.state.add_run("dag_00000", start=clock.now - timedelta(minutes=30) + timedelta(minutes=i)) for i in range(20)]
    while Cursor.parse(ticker.cursor).high_water is None or Cursor.parse(ticker.cursor).high_water < clock.now - timedelta(minutes=2):
        steady.append(fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=50)))  # busy until the pause
        ticker.tick()
    assert Cursor.parse(ticker.cursor).density, "the density of the last window read is kept"
    paused_at = clock.now
    clock.now = NOW  # the sensor was stopped for a day while Airflow kept working
    backlog = [fake.state.add_run("dag_00000", start=paused_at + timedelta(minutes=20 * i)) for i in range(60)]
    needle = "updated_at" if change_source == "scan" else "eventLogs"
    fake.request_log.clear()
    ticker.tick()
    # sized from the density: the backlog's first window is read at once, never listed or counted whole
    backlog_reads = [w for w in _list_windows(fake, 0, needle) if w[0] >= paused_at - timedelta(minutes=5)]
    # asked for twice what fits at that density, cut by the count, read on while few rows came (scan: runs
    # and task instances each)
    from airlift_dagster.sensor.fetch import MAX_WINDOW_READS
    assert len(backlog_reads) <= MAX_WINDOW_READS * (2 if change_source == "scan" else 1), backlog_reads
    assert all(hi - lo < timedelta(hours=3) for lo, hi in backlog_reads), backlog_reads
    ticks = 1
    while Cursor.parse(ticker.cursor).high_water < clock.now - timedelta(minutes=5) and ticks < 80:
        ticker.tick()
        ticks += 1
    assert ticks < 80, "the backlog drained"
    cursor = Cursor.parse(ticker.cursor)
    read_late = [w for w in cursor.pending if w.hi <= clock.now - timedelta(hours=6)]
    assert not read_late, "a window first read after the lateness window is not kept for a second read"
    assert cursor.settled and cursor.settled[-1].hi >= paused_at + timedelta(hours=12), "it settled as first read"
    expected = Counter({(k, r.run_id): 1 for r in [*steady, *backlog] for k in ALL})
    assert ticker.counts() == expected, (expected - ticker.counts(), ticker.counts() - expected)
    # each window read once: no tick after the drain lists the backlog again (the audit's counts aside)
    start = len(fake.request_log)
    for _ in range(3):
        ticker.tick()
    listed = [p for _, p, _ in fake.request_log[start:] if needle in p and "limit=1&" not in p and not p.endswith("limit=1")]
    assert listed and all(lo > paused_at + timedelta(hours=12) for lo, _ in _list_windows(fake, start, needle)
                          if any(lo.isoformat() in unquote(p) for p in listed)), listed
    assert ticker.counts() == Counter({(k, r.run_id): 1 for r in [*steady, *backlog] for k in ALL})


def test_a_quiet_window_forgets_the_density_so_a_catch_up_is_not_read_in_slivers(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    """A dense burst, then quiet ticks, then runs that finished while the sensor was stopped: the
    burst's density does not size the catch-up's windows (it would read a few seconds per tick)."""
    clock = Clock()
    clock.now = NOW - timedelta(minutes=30)  # the catch-up ends now (Dagster's clock: the ledger's reads)
    ticker = Ticker(_defs(instance, clock, max_rows_per_tick=10), dagster_instance)
    burst = [fake.state.add_run("dag_00000", start=clock.now - timedelta(seconds=40 - i), duration=timedelta(seconds=3)) for i in range(3)]
    for _ in range(20):  # the burst, then quiet ticks
        ticker.tick()
        if Cursor.parse(ticker.cursor).density is None and Cursor.parse(ticker.cursor).high_water > clock.now - timedelta(minutes=2):
            break
    assert Cursor.parse(ticker.cursor).density is None, "a window without rows leaves no density"
    stopped = clock.now
    clock.now = NOW
    later = [fake.state.add_run("dag_00000", start=stopped + timedelta(minutes=2 * i)) for i in range(8)]
    ticks = 0
    while Cursor.parse(ticker.cursor).high_water < clock.now - timedelta(minutes=2) and ticks < 40:
        ticker.tick()
        ticks += 1
    assert ticks <= 16, ticks  # 8 runs of 4 rows and 3 audit-log rows each, 10 rows a tick
    assert ticker.counts() == Counter({(k, r.run_id): 1 for r in [*burst, *later] for k in ALL})


@pytest.mark.parametrize("change_source", ["auto", "scan"])
def test_a_burst_after_an_idle_hour_is_caught_up_without_empty_ticks(
        instance: AirflowInstance, fake: FakeAirflow, dagster_instance: DagsterInstance, change_source: str) -> None:
    """Rows are rarely spread evenly: an idle hour, then runs in its last minutes. Cut by its count, the
    window's first share holds nothing; the tick reads on into the rest with the budget left, so no tick
    ends with nothing read while rows wait (the real-Airflow catch-up test saw 29 such ticks)."""
    clock = Clock()
    clock.now = NOW - timedelta(minutes=90)  # ends now (Dagster's clock: the ledger's reads)
    ticker = Ticker(_defs(instance, clock, max_rows_per_tick=10, change_source=change_source), dagster_instance)
    ticker.tick()
    clock.now = NOW
    runs = [fake.state.add_run("dag_00000", start=NOW - timedelta(minutes=10) + timedelta(seconds=30 * i)) for i in range(8)]
    empty = ticks = 0
    while Cursor.parse(ticker.cursor).high_water < clock.now - timedelta(minutes=2) and ticks < 40:
        result = ticker.tick()
        ticks += 1
        empty += not result.asset_events
    assert ticks <= 16 and empty <= 2, (ticks, empty)
    assert ticker.counts() == Counter({(k, r.run_id): 1 for r in runs for k in ALL})


def test_a_window_read_in_pieces_is_one_window() -> None:
    """``read_window`` reads on after a cut that held few rows, and returns the pieces as one window up
    to where it stopped; it stops after :data:`MAX_WINDOW_READS` reads."""
    from airlift_client import TooManyRows
    from airlift_dagster.sensor.fetch import MAX_WINDOW_READS, read_window
    from airlift_dagster.sensor.sources import WindowRows

    lo = NOW - timedelta(hours=1)
    burst = NOW - timedelta(minutes=5)  # 60 rows, evenly in the last 5 minutes; nothing before

    def rows_in(a: datetime, b: datetime) -> int:
        a, b = max(a, burst), min(b, NOW)
        return max(0, int((b - a).total_seconds() / 5))

    asked: list[tuple[datetime, datetime]] = []

    class Burst:
        name = "burst"

        def read(self, a: datetime, b: datetime, max_rows: int | None, *, light: bool = False) -> WindowRows | TooManyRows:
            asked.append((a, b))
            n = rows_in(a, b)
            return TooManyRows(n) if max_rows is not None and n > max_rows else WindowRows([], [], n, n)

        def count(self, a: datetime, b: datetime) -> int:
            raise AssertionError("not counted apart")

    hi, rows = read_window(Burst(), lo, NOW, 20)  # type: ignore[arg-type]
    assert 10 <= rows.size <= 20 and rows.size == rows_in(lo, hi), (rows.size, asked)
    assert all(b < a2 for (_, b), (a2, _) in itertools.pairwise(sorted(asked)) if b < a2) and len(asked) <= MAX_WINDOW_READS


def test_an_oversized_window_is_cut_to_the_share_its_count_allows() -> None:
    """``read_window`` cuts an oversized window by the count that came back (aiming at 80 % of the
    budget), not by halving: a day holding 50 times the budget is sized in two reads, not six."""
    from airlift_client import TooManyRows
    from airlift_dagster.sensor.fetch import read_window
    from airlift_dagster.sensor.sources import WindowRows

    lo = NOW - timedelta(days=1)
    per_second = 50 * 1000 / timedelta(days=1).total_seconds()
    asked: list[timedelta] = []

    class Even:
        name = "even"

        def read(self, a: datetime, b: datetime, max_rows: int | None, *, light: bool = False) -> WindowRows | TooManyRows:
            asked.append(b - a)
            n = int((b - a).total_seconds() * per_second)
            return TooManyRows(n) if max_rows is not None and n > max_rows else WindowRows([], [], n, n)

        def count(self, a: datetime, b: datetime) -> int:
            raise AssertionError("not counted apart")

    hi, rows = read_window(Even(), lo, NOW, 1000)  # type: ignore[arg-type]
    assert len(asked) == 2 and 700 <= rows.size <= 1000, (asked, rows.size)
    asked.clear()
    hi, rows = read_window(Even(), lo, NOW, 1000, first_hi=lo + timedelta(seconds=900 / per_second))  # type: ignore[arg-type]
    assert len(asked) == 1 and hi == lo + timedelta(seconds=900 / per_second)


def test_a_cursor_keeps_the_windows_read_late_and_the_density() -> None:
    window = SweepWindow(NOW - timedelta(hours=30), NOW - timedelta(hours=29), 12, 34, size=20)
    cursor = Cursor(high_water=NOW, pending=[SweepWindow(NOW - timedelta(hours=31), NOW - timedelta(hours=30), 5, 6), window],
                    density=2.5)
    again = Cursor.parse(cursor.serialize())
    assert again.pending == cursor.pending and again.density == 2.5
    # a release that does not know the windows read late reads "sw" alone: the same windows, read again
    record = json.loads(cursor.serialize())
    del record["sl"], record["dn"]
    older = Cursor.parse(json.dumps(record))
    assert [w.size for w in older.pending] == [None, None] and older.density is None
    assert cursor.for_source("log").pending[1].size is None, "another source's counts do not compare"

"""Chaos scenarios on real servers: Airflow (the major under test, push on), a Dagster webserver +
daemon serving the Airlift definitions under an instance name the Airflow side must learn, observed
and migrated tasks, and scripted operations on both sides. Each scenario prints its ledger (one row
per Airflow try and per DAG run: expected / seen, by source) and passes only when every success is
in Dagster exactly once and nothing else is.

    uvx nox -t chaos                                   # every scenario, Airflow 2 and 3
    uvx nox -s chaos-ci-airflow3                       # the quick subset (three scenarios)
    uvx nox -s chaos-airflow3 -- -k backlog            # one scenario

One Airflow and one Dagster serve every scenario of a session (see conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from airlift_protocol import AirflowTaskRef

if TYPE_CHECKING:
    from conftest import Chaos

pytestmark = pytest.mark.integration
MAIN, LATE, NAMED = "chaos_main", "chaos_late", "chaos_named"


def _states(chaos: Chaos, dag_id: str, run_id: str) -> dict[str, str]:
    return {f"{ti['task_id']}[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else ti["task_id"]: ti["state"]
            for ti in chaos.task_instances(dag_id, run_id)}


def _succeeded(chaos: Chaos, dag_id: str, run_id: str) -> None:
    run = chaos.get_run(dag_id, run_id)
    if run["state"] != "success":
        states = _states(chaos, dag_id, run_id)
        failed = sorted({task.split("[")[0] for task, state in states.items() if state == "failed"})
        logs = "\n".join(f"--- {task} ---\n" + "\n".join(chaos.task_log(run_id, task).splitlines()[-40:]) for task in failed)
        raise AssertionError(f"{dag_id} {run_id} ended {run['state']}: {states}\n{logs}")


def _task_done(chaos: Chaos, dag_id: str, run_id: str, task_id: str) -> bool:
    states = [ti["state"] for ti in chaos.task_instances(dag_id, run_id) if ti["task_id"] == task_id]
    return bool(states) and all(s == "success" for s in states)


@pytest.mark.chaos_ci
def test_ledger_rows(chaos_ledger_cls: Any) -> None:
    """The ledger itself: a try seen once passes, a second copy, a missing one and a stray one are rows
    marked wrong, and a migrated task's run launched by try 1 stands for its successful try 2."""
    ledger, seen_cls = chaos_ledger_cls()
    key = (MAIN, "r1", "extract", -1, 1)
    ledger.record_try(key, "success", 0)
    ledger.record_try((MAIN, "r1", "flaky", -1, 1), "failed", 1)
    ledger.record_try((MAIN, "r1", "flaky", -1, 2), "success", 1)
    ledger.record_run(MAIN, "r1", "success", "2026-01-01T00:00:00Z")
    reattached = AirflowTaskRef(MAIN, "flaky", "r1", try_number=1, max_tries=1)
    seen = [
        seen_cls(("chaos", "raw"), "r1", -1, 1, "push"),
        seen_cls(("chaos", "flaky"), "r1", -1, 1, "run", reattached),
        seen_cls(("chaos_prod", "dag", MAIN), "r1", -1, 0, "sensor"),
    ]
    text, wrong, complete = ledger.table([(MAIN, "r1")], seen)
    assert not wrong and complete, text
    assert "flaky" in text and "failed" in text
    _, wrong, _ = ledger.table([(MAIN, "r1")], [*seen, seen_cls(("chaos", "raw"), "r1", -1, 1, "sensor")])
    assert wrong == [w for w in wrong if "extract" in w] and len(wrong) == 1
    _, wrong, complete = ledger.table([(MAIN, "r1")], seen[1:])
    assert len(wrong) == 1 and not complete
    _, wrong, _ = ledger.table([(MAIN, "r1")], [*seen, seen_cls(("chaos", "raw"), "r1", -1, 7, "sensor")])
    assert len(wrong) == 1 and "not an expected row" in wrong[0]


@dataclass(frozen=True)
class Backlog:
    """The quick subset's two runs and when both had ended (nothing changes them afterwards)."""

    run_ids: list[str]
    ended_by: datetime


@pytest.fixture(scope="module")
def backlog(chaos: Chaos) -> Backlog:
    """The runs of the quick subset's scenarios, together: the daemon is stopped while two runs go, the
    second with a first try of flaky lost after its launch. Push keeps delivering the observed tasks
    while the migrated tasks wait in Dagster's queue; the sensor then has a backlog of more rows than
    one tick reads (two DAG runs and their 14 task instances; a tick reads 10 rows) and the lost try's retry
    re-attaches to the queued run."""
    chaos.dagster.stop_daemon()
    try:
        run_ids = [chaos.trigger(), chaos.trigger(fail_after_launch=["flaky"])]
        for run_id in run_ids:
            chaos.wait_for(lambda r=run_id: _task_done(chaos, MAIN, r, "fan"), what=f"fan of {run_id}")
        try:
            chaos.wait_for(lambda: _try_number(chaos, run_ids[1], "flaky") == 2, what="flaky's retry")
        except Exception as e:
            raise AssertionError(f"{e}\n{_states(chaos, MAIN, run_ids[1])}\n--- flaky's log ---\n"
                                 f"{chaos.task_log(run_ids[1], 'flaky')[-6000:]}\n--- Airflow ---\n{chaos.airflow.log_tail(60)}") from e
    finally:
        chaos.dagster.start_daemon()
    for run_id in run_ids:
        chaos.wait(MAIN, run_id)
    return Backlog(run_ids, datetime.now(timezone.utc))


def _try_number(chaos: Chaos, run_id: str, task_id: str) -> int:
    """The task's current try. Airflow before 2.10 lowers a deferred task's try number by one until the
    trigger fires (it raises it again when the task resumes), and its REST API shows the lowered number."""
    [ti] = [ti for ti in chaos.task_instances(MAIN, run_id) if ti["task_id"] == task_id]
    lowered = ti["state"] == "deferred" and chaos.airflow_older_than(2, 10)
    return int(ti["try_number"]) + (1 if lowered else 0)


@pytest.mark.chaos_ci
def test_instance_names_differ(chaos: Chaos, backlog: Backlog) -> None:
    """Nothing on the Airflow side names the instance: push and the operator learn Dagster's name."""
    run_id = backlog.run_ids[0]
    _succeeded(chaos, MAIN, run_id)
    chaos.check([(MAIN, run_id)], title="instance names differ", unchanged_since=backlog.ended_by)
    runs = chaos.dagster_runs(run_id)
    assert {r["tags"].get("airlift/airflow_instance") for r in runs} == {chaos.INSTANCE}, [r["tags"] for r in runs]
    pushed = [s for s in chaos.seen() if s.airflow_run_id == run_id and s.source == "push"]
    assert pushed, "push delivered nothing: it did not find the DAG asset under Dagster's instance name"


@pytest.mark.chaos_ci
def test_retry_reattaches_to_its_queued_run(chaos: Chaos, backlog: Backlog) -> None:
    run_id = backlog.run_ids[1]
    _succeeded(chaos, MAIN, run_id)
    chaos.check([(MAIN, run_id)], title="a re-attached retry (its run queued)", unchanged_since=backlog.ended_by)
    assert _try_number(chaos, run_id, "flaky") == 2
    runs = chaos.dagster_runs(run_id, "flaky")
    assert [(r["tags"].get("airlift/airflow_try_number"), r["status"]) for r in runs] == [("1", "SUCCESS")], runs


@pytest.mark.chaos_ci
def test_push_with_a_backlog(chaos: Chaos, backlog: Backlog) -> None:
    for run_id in backlog.run_ids:
        _succeeded(chaos, MAIN, run_id)
    chaos.check([(MAIN, r) for r in backlog.run_ids], title="push with a backlog", unchanged_since=backlog.ended_by)
    pushed = {s.asset for s in chaos.seen() if s.airflow_run_id in backlog.run_ids and s.source == "push"}
    assert ("chaos", "fanned") in pushed, "push delivered none of the tasks that ran while the daemon was down"


def test_retry_reattaches_to_its_running_run(chaos: Chaos) -> None:
    """flaky's first try is lost while its Dagster run runs; the retry re-attaches to that run."""
    run_id = chaos.run(fail_after_launch=["flaky"])
    _succeeded(chaos, MAIN, run_id)
    chaos.check([(MAIN, run_id)], title="a re-attached retry (its run running)")
    assert _try_number(chaos, run_id, "flaky") == 2
    runs = chaos.dagster_runs(run_id, "flaky")
    assert [(r["tags"].get("airlift/airflow_try_number"), r["status"]) for r in runs] == [("1", "SUCCESS")], runs


def test_an_explicit_instance_name_dagster_does_not_have_fails_the_task(chaos: Chaos) -> None:
    """chaos_named's operator is told "staging"; Dagster knows the instance as chaos_prod: the task fails
    with an error naming the name, and nothing runs or lands in Dagster for it."""
    run_id = chaos.run(NAMED)
    chaos.check([(NAMED, run_id)], title="explicit instance name 'staging', Dagster's is 'chaos_prod'")
    states = _states(chaos, NAMED, run_id)
    assert states == {"named_task": "failed"}, states
    assert chaos.dagster_runs(run_id) == [], "a run was launched under a name Dagster does not have"
    errors = [line for line in chaos.task_log(run_id, "named_task").splitlines() if "staging" in line]
    assert errors, "the task log does not name the configured instance name"
    print("\n".join(line[:400] for line in errors[:3]))


def test_clear_one_task_then_with_downstream(chaos: Chaos) -> None:
    run_id = chaos.run()
    chaos.check([(MAIN, run_id)], title="before the clears")
    chaos.clear(MAIN, run_id, ["extract"], downstream=False)
    _succeeded(chaos, MAIN, run_id)
    chaos.check([(MAIN, run_id)], title="clear one task")
    chaos.clear(MAIN, run_id, ["fan"], downstream=True)
    _succeeded(chaos, MAIN, run_id)
    assert len(chaos.dagster_runs(run_id, "migrated")) == 2, "the cleared migrated task launched a new Dagster run"
    chaos.check([(MAIN, run_id)], title="clear with downstream")


def test_mark_success_and_mark_failed(chaos: Chaos) -> None:
    failed = chaos.run(fail_load=True)
    assert chaos.get_run(MAIN, failed)["state"] == "failed"
    chaos.mark(MAIN, failed, "load", "success")  # the last task: nothing downstream for Airflow to clear
    done = chaos.run()
    chaos.check([(MAIN, failed), (MAIN, done)], title="mark success")
    chaos.mark(MAIN, done, "extract", "failed")
    chaos.check([(MAIN, failed), (MAIN, done)], title="mark failed after success")


def test_webserver_restarted_during_runs(chaos: Chaos) -> None:
    run_ids = [chaos.trigger() for _ in range(2)]
    chaos.wait_for(lambda: _task_done(chaos, MAIN, run_ids[0], "extract"), what="the first task")
    chaos.dagster.restart_webserver(down_seconds=10)
    for run_id in run_ids:
        chaos.wait(MAIN, run_id)
    chaos.check([(MAIN, r) for r in run_ids], title="Dagster webserver restarted during runs")
    for run_id in run_ids:
        _succeeded(chaos, MAIN, run_id)


def test_slow_dagster(chaos: Chaos) -> None:
    """Every request of push and the operator to Dagster answered 6 s late (the proxy in front of it)."""
    chaos.proxy.delay = 6.0
    try:
        run_id = chaos.run()
    finally:
        chaos.proxy.delay = 0.0
    _succeeded(chaos, MAIN, run_id)
    assert chaos.proxy.delayed > 0
    chaos.check([(MAIN, run_id)], title="slow Dagster")


def test_crash_between_storing_events_and_saving_the_cursor(chaos: Chaos) -> None:
    """The sensor reads a run, Dagster stores its events, then the daemon dies before the cursor is
    saved: simulated by setting the cursor back to the one from before the run and restarting."""
    chaos.dagster.stop_daemon()
    before = chaos.dagster.sensor_state(chaos.SENSOR)["typeSpecificData"]["lastCursor"]
    chaos.dagster.start_daemon()
    run_id = chaos.run()
    _succeeded(chaos, MAIN, run_id)
    chaos.check([(MAIN, run_id)], title="before the crash")
    chaos.dagster.stop_daemon()
    chaos.dagster.set_sensor_cursor(chaos.SENSOR, before)
    chaos.dagster.start_daemon()
    chaos.check([(MAIN, run_id)], title="after the crash (cursor from before the run)")


def test_dag_newly_mapped_while_its_runs_change(chaos: Chaos) -> None:
    """chaos_late has runs (one re-run by a clear) before its task is mapped; the mapping arrives while
    another run goes, and a run is cleared after it."""
    first = chaos.run(LATE)
    chaos.check([(LATE, first)], title="chaos_late not mapped yet")
    chaos.clear(LATE, first, ["late_task"], downstream=False)
    chaos.check([(LATE, first)], title="chaos_late not mapped yet, a task cleared")
    second = chaos.trigger(LATE)
    chaos.map_late_dag([(LATE, first), (LATE, second)])
    chaos.wait(LATE, second)
    chaos.check([(LATE, first), (LATE, second)], title="DAG newly mapped")
    chaos.clear(LATE, first, ["late_task"], downstream=False)
    chaos.check([(LATE, first), (LATE, second)], title="DAG newly mapped, then a run cleared")

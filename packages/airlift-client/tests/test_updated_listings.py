"""Listings of the DAG runs and task instances whose rows changed (``updated_at``), both generations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from airlift_client import AirflowInstance, AirflowResponseError, TooManyRows
from airlift_testing.fake_airflow import EPOCH, FakeAirflow, FakeAirflowState


def test_changed_rows_in_a_window_all_pages_and_counted(fake_factory: Callable[..., FakeAirflow],
                                                       instance_for: Callable[..., AirflowInstance]) -> None:
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=4, runs_per_dag=30)
    fake = fake_factory(state, maximum_page_limit=7)
    instance = instance_for(fake)
    lo, hi = EPOCH + timedelta(minutes=10), EPOCH + timedelta(minutes=40)
    expected_runs = {(r.dag_id, r.run_id) for r in state.runs if r.updated_at is not None and lo <= r.updated_at <= hi}
    expected_tis = {(t.dag_id, t.run_id, t.task_id) for t in state.task_instances if t.updated_at is not None and lo <= t.updated_at <= hi}
    runs = list(instance.iter_updated_dag_runs(updated_at_gte=lo, updated_at_lte=hi))
    tis = list(instance.iter_updated_task_instances(updated_at_gte=lo, updated_at_lte=hi, states=["success"]))
    assert {(r.dag_id, r.run_id) for r in runs} == expected_runs and len(runs) == len(expected_runs)
    assert {(t.dag_id, t.run_id, t.task_id) for t in tis} == expected_tis and len(tis) == len(expected_tis)
    assert instance.count_updated(updated_at_gte=lo, updated_at_lte=hi) == len(expected_runs) + len(expected_tis)
    # a row changed later (cleared, marked) moves into a later window
    touched = state.task_instances[0]
    state.touch(touched, EPOCH + timedelta(days=10), state="failed")
    later = list(instance.iter_updated_task_instances(updated_at_gte=EPOCH + timedelta(days=9), updated_at_lte=EPOCH + timedelta(days=11)))
    assert [(t.task_id, t.state) for t in later] == [(touched.task_id, "failed")]


def test_a_list_that_keeps_changing_is_an_error_not_a_partial_list(fake_factory: Callable[..., FakeAirflow],
                                                                   instance_for: Callable[..., AirflowInstance],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    state = FakeAirflowState.generate(dags=2, tasks_per_dag=2, runs_per_dag=5)
    fake = fake_factory(state, maximum_page_limit=3)
    original = state.changed_between
    calls = {"n": 0}

    def shifting(name: str, gte: str | None, lte: str | None) -> list[object]:
        calls["n"] += 1
        return original(name, gte, lte)[calls["n"] % 2:]

    monkeypatch.setattr(state, "changed_between", shifting)
    with pytest.raises(AirflowResponseError, match="kept changing while it was read"):
        list(instance_for(fake).iter_updated_dag_runs(updated_at_gte=EPOCH, updated_at_lte=EPOCH + timedelta(days=1)))


def test_read_updated_sizes_a_window_from_the_first_pages(fake_factory: Callable[..., FakeAirflow],
                                                         instance_for: Callable[..., AirflowInstance]) -> None:
    """``read_updated`` reads both lists whole (all pages, the first page not asked twice) when Airflow
    counts at most ``max_rows`` rows, and stops after the two first pages (``None``) when it counts more."""
    state = FakeAirflowState.generate(dags=3, tasks_per_dag=4, runs_per_dag=30)
    fake = fake_factory(state, maximum_page_limit=7)
    instance = instance_for(fake)
    lo, hi = EPOCH + timedelta(minutes=10), EPOCH + timedelta(minutes=40)
    expected_runs = {(r.dag_id, r.run_id) for r in state.runs if r.updated_at is not None and lo <= r.updated_at <= hi}
    expected_tis = {(t.dag_id, t.run_id, t.task_id) for t in state.task_instances if t.updated_at is not None and lo <= t.updated_at <= hi}
    total = len(expected_runs) + len(expected_tis)
    assert total > 2 * 7, "more than one page of each"
    instance.list_dags()  # the generation is known before counting requests
    fake.request_log.clear()
    rows = instance.read_updated(updated_at_gte=lo, updated_at_lte=hi, max_rows=total)
    assert rows is not None
    runs, tis = rows
    assert {(r.dag_id, r.run_id) for r in runs} == expected_runs and len(runs) == len(expected_runs)
    assert {(t.dag_id, t.run_id, t.task_id) for t in tis} == expected_tis and len(tis) == len(expected_tis)
    pages = [p for m, p, _ in fake.request_log if "updated_at" in p]
    offsets = [p.split("offset=")[1].split("&")[0] for p in pages]
    assert offsets.count("0") == 2, "each list's first page is asked once (it carries the count)"
    assert len(pages) == -(-len(expected_runs) // 7) + -(-len(expected_tis) // 7)
    fake.request_log.clear()
    assert instance.read_updated(updated_at_gte=lo, updated_at_lte=hi, max_rows=total - 1) == TooManyRows(total)
    assert len([p for m, p, _ in fake.request_log if "updated_at" in p]) == 2, "the two first pages, nothing more"
    fake.request_log.clear()
    only_runs = instance.read_updated(updated_at_gte=lo, updated_at_lte=hi, max_rows=len(expected_runs), task_instances=False)
    assert only_runs is not None and {(r.dag_id, r.run_id) for r in only_runs[0]} == expected_runs and only_runs[1] == []
    assert not [p for m, p, _ in fake.request_log if "taskInstances" in p], "no task instance is read"
    assert instance.count_updated(updated_at_gte=lo, updated_at_lte=hi, task_instances=False) == len(expected_runs)

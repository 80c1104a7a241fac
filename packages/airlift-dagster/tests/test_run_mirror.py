"""Airflow DAG runs mirrored as Dagster runs: one run per Airflow run whatever the number of ticks,
status and times following Airflow, materializations in the run's event log, nothing queued."""

from __future__ import annotations

from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)

from airlift_client import ui_links_for
from airlift_dagster.run_mirror import MIRRORED_RUN_TAG, mirror_airflow_runs, mirrored_run_id
from airlift_protocol import ApiVersion, DagRun, TaskInstance
from airlift_protocol.tags import AIRFLOW_DAG_ID_RUN_TAG, AIRFLOW_RUN_ID_RUN_TAG, AirflowEventId

LINKS = ui_links_for(ApiVersion.V2, "http://airflow:8080")
RUN_ID = "manual__2026-01-01T00:00:00+00:00"


def _run(state: str, **dates: Any) -> DagRun:
    return DagRun.from_rest({"dag_id": "sales", "dag_run_id": RUN_ID, "state": state, "run_type": "manual", **dates}, api=ApiVersion.V2)


def _materialization() -> AssetMaterialization:
    event_id = AirflowEventId("prod", "sales", RUN_ID, task_id="load", try_number=1)
    return AssetMaterialization(asset_key=AssetKey(["sales"]), tags=event_id.tags())


def _mirror(instance: DagsterInstance, runs: list[DagRun], events: list[Any]) -> list[Any]:
    return mirror_airflow_runs(instance, instance_name="prod", runs=runs, events=events, links=LINKS)


def test_one_run_follows_airflow_across_ticks(dagster_instance: DagsterInstance) -> None:
    queued = _run("queued")
    running = _run("running", start_date="2026-01-01T00:00:05+00:00")
    done = _run("success", start_date="2026-01-01T00:00:05+00:00", end_date="2026-01-01T00:01:05+00:00")
    check = AssetCheckEvaluation(asset_key=AssetKey(["sales"]), check_name="c", passed=True)

    assert _mirror(dagster_instance, [queued], []) == []
    run_id = mirrored_run_id("prod", "sales", RUN_ID)
    assert dagster_instance.get_run_by_id(run_id).status == DagsterRunStatus.NOT_STARTED  # never QUEUED: no daemon picks it up
    _mirror(dagster_instance, [running], [])
    assert dagster_instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
    left = _mirror(dagster_instance, [done], [_materialization(), check])
    assert left == [check]  # the check result stays with the sensor; the materialization went into the run
    for _ in range(2):  # re-ticks and re-read windows write nothing more
        _mirror(dagster_instance, [done], [])

    records = dagster_instance.get_run_records(RunsFilter(tags={MIRRORED_RUN_TAG: "true"}))
    assert [r.dagster_run.run_id for r in records] == [run_id]
    record = records[0]
    assert record.dagster_run.status == DagsterRunStatus.SUCCESS
    assert (record.start_time, record.end_time) == (done.start_date.timestamp(), done.end_date.timestamp())  # type: ignore[union-attr]
    assert record.dagster_run.tags[AIRFLOW_DAG_ID_RUN_TAG] == "sales"
    assert record.dagster_run.tags[AIRFLOW_RUN_ID_RUN_TAG] == RUN_ID
    assert record.dagster_run.tags["airlift/airflow_run_url"] == LINKS.run_url("sales", RUN_ID)
    kinds = [e.dagster_event.event_type for e in dagster_instance.all_logs(run_id) if e.dagster_event]
    assert kinds == [DagsterEventType.RUN_START, DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.RUN_SUCCESS]
    latest = dagster_instance.get_latest_materialization_event(AssetKey(["sales"]))
    assert latest is not None and latest.run_id == run_id


def test_a_run_first_seen_finished_and_failed_gets_its_whole_lifecycle(dagster_instance: DagsterInstance) -> None:
    failed = _run("failed", start_date="2026-01-01T00:00:05+00:00", end_date="2026-01-01T00:00:09+00:00")
    _mirror(dagster_instance, [failed], [])
    run = dagster_instance.get_run_by_id(mirrored_run_id("prod", "sales", RUN_ID))
    assert run is not None and run.status == DagsterRunStatus.FAILURE


def test_events_of_runs_not_mirrored_stay_with_the_sensor(dagster_instance: DagsterInstance) -> None:
    event = _materialization()
    assert _mirror(dagster_instance, [], [event]) == [event]
    assert mirror_airflow_runs(None, instance_name="prod", runs=[_run("running")], events=[event], links=LINKS) == [event]
    assert dagster_instance.get_run_records(RunsFilter(tags={MIRRORED_RUN_TAG: "true"})) == []


def test_a_run_read_first_through_its_task_instances_starts_there(dagster_instance: DagsterInstance) -> None:
    ti = TaskInstance.from_rest({"dag_id": "sales", "dag_run_id": RUN_ID, "task_id": "load", "try_number": 1, "map_index": -1,
                                 "state": "success", "start_date": "2026-01-01T00:00:07+00:00", "end_date": "2026-01-01T00:00:08+00:00"},
                                api=ApiVersion.V2)
    assert mirror_airflow_runs(dagster_instance, instance_name="prod", runs=[], task_instances=[ti], events=[_materialization()],
                               links=LINKS) == []
    run_id = mirrored_run_id("prod", "sales", RUN_ID)
    assert dagster_instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
    _mirror(dagster_instance, [_run("success", start_date="2026-01-01T00:00:05+00:00", end_date="2026-01-01T00:00:09+00:00")], [])
    record = dagster_instance.get_run_records(RunsFilter(run_ids=[run_id]))[0]
    assert record.dagster_run.status == DagsterRunStatus.SUCCESS and record.start_time == ti.start_date.timestamp()  # type: ignore[union-attr]
    assert [e.dagster_event.event_type for e in dagster_instance.all_logs(run_id) if e.dagster_event] == [
        DagsterEventType.RUN_START, DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.RUN_SUCCESS]


def test_a_mirrored_run_follows_airflow_when_the_run_is_cleared_and_fails(dagster_instance: DagsterInstance) -> None:
    succeeded = _run("success", start_date="2026-01-01T00:00:05+00:00", end_date="2026-01-01T00:01:05+00:00")
    _mirror(dagster_instance, [succeeded], [_materialization()])
    run_id = mirrored_run_id("prod", "sales", RUN_ID)
    assert dagster_instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    rerun = _run("running", start_date="2026-01-01T01:00:00+00:00")  # cleared in Airflow, running again
    _mirror(dagster_instance, [rerun], [])
    assert dagster_instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
    failed = _run("failed", start_date="2026-01-01T01:00:00+00:00", end_date="2026-01-01T01:02:00+00:00")
    for _ in range(2):  # a re-read of the same row writes nothing more
        _mirror(dagster_instance, [failed], [])
    records = dagster_instance.get_run_records(RunsFilter(tags={MIRRORED_RUN_TAG: "true"}))
    assert [r.dagster_run.run_id for r in records] == [run_id], "one mirrored record per Airflow run"
    assert records[0].dagster_run.status == DagsterRunStatus.FAILURE
    assert records[0].end_time == failed.end_date.timestamp()  # type: ignore[union-attr]
    kinds = [e.dagster_event.event_type for e in dagster_instance.all_logs(run_id) if e.dagster_event]
    assert kinds == [DagsterEventType.RUN_START, DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.RUN_SUCCESS,
                     DagsterEventType.RUN_START, DagsterEventType.RUN_FAILURE]


def test_a_run_cleared_between_two_ticks_that_fails_is_failed_in_dagster(dagster_instance: DagsterInstance) -> None:
    _mirror(dagster_instance, [_run("success", start_date="2026-01-01T00:00:05+00:00", end_date="2026-01-01T00:01:05+00:00")], [])
    _mirror(dagster_instance, [_run("failed", start_date="2026-01-01T01:00:00+00:00", end_date="2026-01-01T01:02:00+00:00")], [])
    assert dagster_instance.get_run_by_id(mirrored_run_id("prod", "sales", RUN_ID)).status == DagsterRunStatus.FAILURE

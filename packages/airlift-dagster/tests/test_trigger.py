"""Executable DAG assets against the fake Airflow (both REST generations): materializing one triggers
the DAG with the run config's conf, waits, reports the run's success once; the sensor leaves that
success to the Dagster run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
)

from airlift_client import AirflowInstance, BasicAuthBackend, RetryPolicy
from airlift_dagster import (
    AirliftDagsterError,
    ExecutableDagSettings,
    build_defs_from_airflow_instance,
)
from airlift_dagster.sensor import SensorSettings
from airlift_dagster.trigger import airflow_run_id_for
from airlift_protocol import DAG_TRIGGER_TASK_ID, dagster_run_tags
from airlift_protocol.tags import AirflowEventId, airflow_event_key_of
from airlift_testing.fake_airflow import FakeAirflow, FakeRun

NOW = datetime.now(timezone.utc)
DAG = "dag_00001"
KEY = AssetKey(["inst", "dag", DAG])
OP = f"inst__run_dag__{DAG}"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _airflow(fake: FakeAirflow, *, ends: str = "success") -> AirflowInstance:
    """An instance whose waits end the triggered runs (``ends``) after the first poll."""

    def sleep(_seconds: float) -> None:
        for run in fake.state.runs:
            if run.run_id.startswith("dagster__") and run.state == "queued":
                fake.state.touch(run, NOW - timedelta(minutes=5), state=ends, start_date=NOW - timedelta(minutes=6),
                                 end_date=NOW - timedelta(minutes=5))

    return AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"), name="inst",
                           retry_policy=RetryPolicy(max_attempts=2, sleep=lambda s: None), sleep=sleep)


def _defs(airflow: AirflowInstance, clock: Clock) -> Definitions:
    return build_defs_from_airflow_instance(airflow_instance=airflow, executable_dags=[DAG],
                                            sensor_settings=SensorSettings(clock=clock))


def _materialize(defs: Definitions, instance: DagsterInstance, conf: dict[str, Any] | None = None) -> Any:
    job = defs.resolve_implicit_global_asset_job_def()
    run_config = {"ops": {OP: {"config": {"conf": conf}}}} if conf is not None else None
    return job.execute_in_process(instance=instance, asset_selection=[KEY], run_config=run_config, raise_on_error=False)


def _sensor_materializations(defs: Definitions, instance: DagsterInstance) -> list[AssetMaterialization]:
    from dagster import build_sensor_context

    sensor = defs.resolve_sensor_def("inst__airflow_sensor")
    result = sensor(build_sensor_context(instance=instance, definitions=defs))
    return [e for e in result.asset_events if isinstance(e, AssetMaterialization) and e.asset_key == KEY]


def _triggered(fake: FakeAirflow) -> list[FakeRun]:
    return [r for r in fake.state.runs if r.run_id.startswith("dagster__")]


def test_materializing_triggers_the_dag_with_conf_and_reports_its_success_once(
    fake: FakeAirflow, dagster_instance: DagsterInstance,
) -> None:
    fake.state.dag(DAG).is_paused = False  # type: ignore[union-attr]
    clock = Clock()
    defs = _defs(_airflow(fake), clock)
    result = _materialize(defs, dagster_instance, conf={"region": "eu", "limit": 5})
    assert result.success
    [run] = _triggered(fake)
    assert run.run_id == airflow_run_id_for(result.run_id) and run.conf == {"region": "eu", "limit": 5}
    [materialization] = result.asset_materializations_for_node(OP)
    assert airflow_event_key_of(materialization.tags, instance_name="inst") == AirflowEventId(
        "inst", DAG, run.run_id, run_end_date=run.end_date.isoformat()).key  # type: ignore[union-attr]
    assert materialization.metadata["Airflow run id"].value == run.run_id
    tags = dagster_instance.get_run_by_id(result.run_id).tags  # type: ignore[union-attr]
    assert tags["airlift/airflow_task_id"] == DAG_TRIGGER_TASK_ID and tags["airlift/airflow_run_id"] == run.run_id
    # the sensor reads the same DAG run's success and leaves it to the Dagster run
    assert _sensor_materializations(defs, dagster_instance) == []


def test_a_failed_airflow_run_fails_the_step_with_its_link(fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    fake.state.dag(DAG).is_paused = False  # type: ignore[union-attr]
    airflow = _airflow(fake, ends="failed")
    result = _materialize(_defs(airflow, Clock()), dagster_instance)
    assert not result.success
    [run] = _triggered(fake)
    failure = result.failure_data_for_node(OP)
    assert failure is not None
    message = str(failure.user_failure_data.description if failure.user_failure_data else failure.error)
    assert f"Airflow DAG run {run.run_id} of {DAG} ended failed: {airflow.run_url(DAG, run.run_id)}" in message
    assert result.asset_materializations_for_node(OP) == []


def test_a_paused_dag_is_not_triggered(fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    fake.state.dag(DAG).is_paused = True  # type: ignore[union-attr]
    result = _materialize(_defs(_airflow(fake), Clock()), dagster_instance)
    assert not result.success and _triggered(fake) == []


def test_a_retried_step_re_attaches_to_the_run_it_triggered(fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    fake.state.dag(DAG).is_paused = False  # type: ignore[union-attr]
    defs = _defs(_airflow(fake), Clock())
    from airlift_dagster.trigger import _trigger_once

    airflow = _airflow(fake)
    first = _trigger_once(airflow, DAG, "dagster__abc", {"x": 1})
    again = _trigger_once(airflow, DAG, "dagster__abc", {"x": 1})
    assert first.run_id == again.run_id == "dagster__abc" and len(_triggered(fake)) == 1
    assert defs.get_assets_def(KEY).is_executable


@pytest.mark.parametrize(("status", "reported"), [(DagsterRunStatus.STARTED, 0), (DagsterRunStatus.STARTING, 0),
                                                  (DagsterRunStatus.FAILURE, 1), (DagsterRunStatus.CANCELED, 1)])
def test_the_sensor_leaves_a_triggered_runs_success_to_the_dagster_run_in_flight_or_succeeded(
    fake: FakeAirflow, dagster_instance: DagsterInstance, status: DagsterRunStatus, reported: int,
) -> None:
    """A Dagster run still in flight will report it; one that failed or was canceled did not: the sensor does."""
    clock = Clock()
    defs = _defs(_airflow(fake), clock)
    run = fake.state.add_run(DAG, start=NOW - timedelta(minutes=9))
    dagster_instance.add_run(DagsterRun(job_name="__ASSET_JOB", status=status, tags=dagster_run_tags(
        dag_id=DAG, task_id=DAG_TRIGGER_TASK_ID, run_id=run.run_id, instance_name="inst")))
    assert len(_sensor_materializations(defs, dagster_instance)) == reported


def test_unknown_executable_dag_is_a_clear_error(instance: AirflowInstance) -> None:
    with pytest.raises(AirliftDagsterError, match=r"executable_dags names DAG ids it does not have: 'dag_0001' \(closest: dag_00001"):
        build_defs_from_airflow_instance(airflow_instance=instance, executable_dags=["dag_0001"])
    with pytest.raises(AirliftDagsterError, match="takes a list of DAG ids"):
        build_defs_from_airflow_instance(airflow_instance=instance, executable_dags=DAG)


def test_the_wait_follows_the_executable_dag_settings(fake: FakeAirflow, dagster_instance: DagsterInstance) -> None:
    """A run that never finishes: the step reads it every poll_interval and fails after timeout, naming the run."""
    fake.state.dag(DAG).is_paused = False  # type: ignore[union-attr]
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    airflow = AirflowInstance(auth_backend=BasicAuthBackend(webserver_url=fake.url, username="admin", password="admin"), name="inst",
                              retry_policy=RetryPolicy(max_attempts=2, sleep=lambda s: None), sleep=sleep, clock=lambda: now[0])
    defs = build_defs_from_airflow_instance(
        airflow_instance=airflow, executable_dags=[DAG], sensor_settings=SensorSettings(clock=Clock()),
        executable_dag_settings=ExecutableDagSettings(poll_interval=timedelta(seconds=30), timeout=timedelta(minutes=2)))
    result = _materialize(defs, dagster_instance)
    assert not result.success
    assert sleeps == [30.0, 30.0, 30.0, 30.0]
    [run] = _triggered(fake)
    failure = result.failure_data_for_node(OP)
    assert failure is not None
    message = str(failure.user_failure_data.description if failure.user_failure_data else failure.error)
    assert f"run {run.run_id!r} of DAG {DAG!r} is still 'queued' after 120s" in message


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"poll_interval": timedelta(0)}, r"poll_interval must be a timedelta greater than zero, got datetime\.timedelta\(0\)"),
    ({"timeout": 3600}, "timeout must be a timedelta greater than zero, got 3600"),
    ({"poll_interval": timedelta(minutes=10), "timeout": timedelta(minutes=5)},
     r"timeout \(0:05:00\) is shorter than poll_interval \(0:10:00\): raise timeout or lower poll_interval"),
])
def test_executable_dag_settings_are_checked(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(AirliftDagsterError, match=error):
        ExecutableDagSettings(**kwargs)


def test_executable_dag_settings_of_another_type_are_refused(fake: FakeAirflow) -> None:
    with pytest.raises(AirliftDagsterError, match=r"'inst': executable_dag_settings takes an ExecutableDagSettings .*got dict"):
        build_defs_from_airflow_instance(airflow_instance=_airflow(fake), executable_dags=[DAG],
                                         executable_dag_settings={"timeout": 60})  # type: ignore[arg-type]

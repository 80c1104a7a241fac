"""Airflow DAG runs as Dagster runs (optional; ``SensorSettings(mirror_runs=True)``).

Each Airflow DAG run of a peered DAG shows in Dagster's run list and timeline as one Dagster run:
its status follows Airflow (queued → not started, running → started, success, failed) with Airflow's
start and end times, its tags name the Airflow instance, DAG and run and link to the run in the
Airflow UI, and the materializations the sensor reports for that Airflow run are stored in its event
log. Nothing is launched: the run record and its lifecycle events are written to the Dagster
instance's storage by the sensor, and no run is ever put in ``QUEUED`` (the status the queued run
coordinator picks up), so no daemon starts a run worker for it.

Exactly once: a mirrored run's id is derived from its identity (instance, DAG id, Airflow run id:
:func:`mirrored_run_id`); one batched read of those ids tells which runs Dagster already holds, in
which status and with which end time, and only the missing records and transitions are written. A
re-tick, a re-read window or a crash between storing and saving the cursor writes nothing twice.

A mirrored run follows Airflow's latest state of the run: a run cleared in Airflow starts again in
Dagster when Airflow runs it again, and its status and end time follow the new end (a run that
succeeded, was cleared and failed becomes FAILURE). The events the sensor reports carry the Airflow
identity; the run's tags name the Airflow instance, DAG and run.

>>> len(mirrored_run_id("prod", "daily", "manual__2026-01-01T00:00:00+00:00"))
36
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from dagster import (
    AssetMaterialization,
    AssetObservation,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)

from airlift_client import AirflowUiLinks
from airlift_dagster._compat import (
    AssetObservationData,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
    StepMaterializationData,
)
from airlift_protocol import DagRun, TaskInstance, encode_tag_value
from airlift_protocol.tags import (
    AIRFLOW_DAG_ID_RUN_TAG,
    AIRFLOW_INSTANCE_RUN_TAG,
    AIRFLOW_RUN_ID_RUN_TAG,
)

__all__ = [
    "AIRFLOW_RUN_URL_TAG",
    "MIRRORED_RUN_TAG",
    "mirror_airflow_runs",
    "mirror_job_name",
    "mirrored_run_id",
]

#: Tag on every mirrored run (value ``"true"``): the run stands for an Airflow DAG run; Dagster ran nothing.
MIRRORED_RUN_TAG = "airlift/mirrored_airflow_run"
#: The Airflow UI link of the DAG run a mirrored run stands for.
AIRFLOW_RUN_URL_TAG = "airlift/airflow_run_url"
_NAMESPACE = uuid.UUID("6f1c3a52-6a0e-4c5e-9a43-2f4d1f0b8e11")
_DONE = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def _encoded(value: str) -> str:
    """``value`` as :func:`encode_tag_value` gives it (event tags carry ids already encoded)."""
    return value if value.startswith("airlift-sha1-") and len(value) == 48 else encode_tag_value(value)


def mirrored_run_id(instance_name: str, dag_id: str, run_id: str) -> str:
    """The Dagster run id standing for an Airflow DAG run (a UUID derived from the identity, the
    same for raw and tag-encoded ids)."""
    parts = (_encoded(instance_name), _encoded(dag_id), _encoded(run_id))
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def mirror_job_name(instance_name: str, dag_id: str) -> str:
    """The job name a mirrored run is listed under: ``<instance>__<dag id>`` (not a job Dagster can run).

    >>> mirror_job_name("prod", "team.sales-daily")
    'prod__team_sales_daily'
    """
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in dag_id)
    return f"{instance_name}__{safe}"


def _target_status(run: DagRun) -> DagsterRunStatus | None:
    if run.state == "queued":
        return DagsterRunStatus.NOT_STARTED
    if run.state == "running":
        return DagsterRunStatus.STARTED
    if run.state == "success":
        return DagsterRunStatus.SUCCESS
    if run.state == "failed":
        return DagsterRunStatus.FAILURE
    return None


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _moved(recorded_end: float | None, airflow_end: float | None) -> bool:
    """Whether Airflow ended the run again (cleared and re-run) since its end was recorded."""
    return recorded_end is not None and airflow_end is not None and abs(recorded_end - airflow_end) > 0.001


def _lifecycle_event(instance: DagsterInstance, record: DagsterRun, kind: DagsterEventType, message: str, when: float | None) -> None:
    instance.report_dagster_event(
        DagsterEvent(event_type_value=kind.value, job_name=record.job_name, message=message),
        run_id=record.run_id,
        timestamp=when,
    )


def _asset_event(instance: DagsterInstance, record: DagsterRun, event: AssetMaterialization | AssetObservation) -> None:
    if isinstance(event, AssetMaterialization):
        dagster_event = DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name=record.job_name,
                                     event_specific_data=StepMaterializationData(event),
                                     message=event.description or f"Materialized {event.asset_key.to_user_string()}")
    else:
        dagster_event = DagsterEvent(event_type_value=DagsterEventType.ASSET_OBSERVATION.value, job_name=record.job_name,
                                     event_specific_data=AssetObservationData(event),
                                     message=event.description or f"Observed {event.asset_key.to_user_string()}")
    # stored now (Dagster's clock), like the sensor's own events: the sensor's duplicate check reads by store time
    instance.report_dagster_event(dagster_event, run_id=record.run_id)


def _run_of_event(event: Any) -> tuple[str, str] | None:
    if not isinstance(event, (AssetMaterialization, AssetObservation)):
        return None
    tags = event.tags or {}
    dag_id = tags.get(AIRFLOW_DAG_ID_RUN_TAG)
    run_id = tags.get(AIRFLOW_RUN_ID_RUN_TAG)
    return (dag_id, run_id) if dag_id and run_id else None


def mirror_airflow_runs(
    instance: DagsterInstance | None,
    *,
    instance_name: str,
    runs: Iterable[DagRun],
    events: Sequence[Any],
    task_instances: Iterable[TaskInstance] = (),
    links: AirflowUiLinks,
    code_location_origin: Any = None,
    repository_name: str | None = None,
) -> list[Any]:
    """Write the Dagster runs standing for ``runs`` (the Airflow DAG runs a tick read) and their
    missing transitions; store ``events`` that belong to a mirrored run in that run's event log.
    Returns the events left for the sensor to report (those of no mirrored run, and check results).

    Airflow does not always move a run's ``updated_at`` when the run starts, so a tick can read a
    run's task instances before the run row: such a run (``task_instances`` of runs not in ``runs``)
    is created as started, from its earliest task start, and ends when its row is read.

    ``code_location_origin`` and ``repository_name`` (the sensor context's) place the runs in their code
    location, which Dagster's run timeline needs to list them.

    >>> mirror_airflow_runs(None, instance_name="prod", runs=[], events=[], links=links)  # doctest: +SKIP
    []
    """
    if instance is None:
        return list(events)
    latest: dict[str, DagRun] = {}
    for run in runs:
        latest[mirrored_run_id(instance_name, run.dag_id, run.run_id)] = run
    started: dict[str, DagRun] = {}
    for ti in task_instances:
        key = mirrored_run_id(instance_name, ti.dag_id, ti.run_id)
        if key in latest or ti.start_date is None:
            continue
        known = started.get(key)
        if known is None or (known.start_date is not None and ti.start_date < known.start_date):
            started[key] = DagRun(dag_id=ti.dag_id, run_id=ti.run_id, api=ti.api, state="running", run_type=None,
                                  logical_date=ti.logical_date, run_after=None, start_date=ti.start_date, end_date=None, raw={})
    latest.update(started)
    by_event: dict[str, list[Any]] = {}
    left: list[Any] = []
    for event in events:
        ref = _run_of_event(event)
        if ref is None:
            left.append(event)
        else:
            by_event.setdefault(mirrored_run_id(instance_name, *ref), []).append(event)
    wanted = sorted({*latest, *by_event})
    held = {r.dagster_run.run_id: r for r in instance.get_run_records(RunsFilter(run_ids=wanted))} if wanted else {}
    records: dict[str, DagsterRun] = {run_key: r.dagster_run for run_key, r in held.items()}
    ended: dict[str, float | None] = {run_key: r.end_time for run_key, r in held.items()}
    ordered = sorted(latest.items(), key=lambda kv: (_ts(kv[1].start_date) or _ts(kv[1].run_after) or 0.0, kv[0]))
    for run_key, run in ordered:
        status = _target_status(run)
        if status is None:
            continue
        record = records.get(run_key)
        if record is None:
            job_name = mirror_job_name(instance_name, run.dag_id)
            origin = None
            if code_location_origin is not None and repository_name:
                origin = RemoteJobOrigin(repository_origin=RemoteRepositoryOrigin(code_location_origin=code_location_origin,
                                                                                  repository_name=repository_name), job_name=job_name)
            record = instance.add_run(DagsterRun(
                job_name=job_name,
                remote_job_origin=origin,
                run_id=run_key,
                status=DagsterRunStatus.NOT_STARTED,
                tags={
                    MIRRORED_RUN_TAG: "true",
                    AIRFLOW_INSTANCE_RUN_TAG: instance_name,
                    AIRFLOW_DAG_ID_RUN_TAG: run.dag_id,
                    AIRFLOW_RUN_ID_RUN_TAG: run.run_id,
                    AIRFLOW_RUN_URL_TAG: links.run_url(run.dag_id, run.run_id),
                    **({"airlift/airflow_run_type": run.run_type} if run.run_type else {}),
                },
            ))
            records[run_key] = record
        current = record.status
        if status == DagsterRunStatus.STARTED and current in _DONE:  # cleared in Airflow: it runs again
            _lifecycle_event(instance, record, DagsterEventType.RUN_START, f"Airflow DAG run {run.run_id} was cleared and runs again",
                             _ts(run.start_date))
            current = DagsterRunStatus.STARTED
        elif status != DagsterRunStatus.NOT_STARTED and current == DagsterRunStatus.NOT_STARTED:
            _lifecycle_event(instance, record, DagsterEventType.RUN_START, f"Airflow DAG run {run.run_id} started",
                             _ts(run.start_date))
            current = DagsterRunStatus.STARTED
        if status in _DONE and (current != status or _moved(ended.get(run_key), _ts(run.end_date))):
            kind = DagsterEventType.RUN_SUCCESS if status == DagsterRunStatus.SUCCESS else DagsterEventType.RUN_FAILURE
            verb = "succeeded" if status == DagsterRunStatus.SUCCESS else "failed"
            for event in by_event.pop(run_key, []):  # before the end event: they happened inside the run
                _asset_event(instance, record, event)
            _lifecycle_event(instance, record, kind, f"Airflow DAG run {run.run_id} {verb}: {links.run_url(run.dag_id, run.run_id)}",
                             _ts(run.end_date))
    for run_key, run_events in by_event.items():
        record = records.get(run_key)
        if record is None:  # an Airflow run this tick did not read and Dagster does not hold
            left.extend(run_events)
            continue
        for event in run_events:
            _asset_event(instance, record, event)
    return left

"""Dagster definitions of decommissioned DAGs: per decommission file, a job of the DAG's assets and a
schedule (cron, timedelta) or sensor (dataset triggers) that runs it as Airflow's timetable did, plus
the DAG's asset when Airflow no longer lists the DAG (its history stays visible).

>>> from dagster import Definitions
>>> defs = load_decommissioned_defs("decommissioned", defs=Definitions())  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    AssetSpec,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    TimeWindowPartitionsDefinition,
    define_asset_job,
)

from airlift_dagster.decommission.plan import DecommissionPlan, load_decommission_plan
from airlift_dagster.decommission.timetable import DagSchedule
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.mapping import dag_handle_of, task_handles_of
from airlift_protocol.partitions import (
    PartitionKeyError,
    TimeWindowPartitioning,
    partition_key_for_airflow_run,
)

__all__ = [
    "DATA_INTERVAL_END_TAG",
    "DATA_INTERVAL_START_TAG",
    "DECOMMISSIONED_DAG_TAG",
    "decommissioned_job_name",
    "due_intervals",
    "load_decommissioned_defs",
]

#: Run tags of the runs that stand in for a decommissioned DAG's runs.
DECOMMISSIONED_DAG_TAG = "airlift/decommissioned_dag"
DATA_INTERVAL_START_TAG = "airlift/data_interval_start"
DATA_INTERVAL_END_TAG = "airlift/data_interval_end"
#: At most this many missed intervals are launched by one tick (catchup); later ticks launch the rest.
MAX_RUNS_PER_TICK = 50

Interval = tuple[datetime, datetime]


def decommissioned_job_name(dag_id: str) -> str:
    """The job (and, with suffixes, schedule/sensor) name of a decommissioned DAG.

    >>> decommissioned_job_name("team.sales-daily_v2")
    'team_sales_daily_v2_decommissioned'
    """
    return re.sub(r"\W", "_", dag_id) + "_decommissioned"


def _cron_windows(schedule: DagSchedule) -> TimeWindowPartitionsDefinition:
    assert schedule.cron is not None
    start = schedule.start or datetime(1970, 1, 1, tzinfo=timezone.utc)
    return TimeWindowPartitionsDefinition(cron_schedule=schedule.cron, start=start, timezone=schedule.timezone,
                                          fmt="%Y-%m-%dT%H:%M:%S")


def _intervals_back_from(schedule: DagSchedule, now: datetime) -> Iterator[Interval]:
    """The schedule's intervals whose tick is at or before ``now``, latest first (a trigger timetable's
    interval is its tick)."""
    if schedule.kind == "interval":
        assert schedule.start is not None and schedule.interval_seconds
        step = timedelta(seconds=schedule.interval_seconds)
        end = schedule.start + step * ((now - schedule.start) // step)
        while end > schedule.start:
            yield (end - step, end) if schedule.data_interval else (end, end)
            end -= step
        if not schedule.data_interval and end == schedule.start:
            yield (end, end)
        return
    windows = _cron_windows(schedule)
    cursor = now
    while True:
        window = windows.get_prev_partition_window(cursor, respect_bounds=False)
        if window is None or (schedule.start is not None and window.start < schedule.start):
            return
        yield (window.start, window.end) if schedule.data_interval else (window.end, window.end)
        cursor = window.start


def due_intervals(schedule: DagSchedule, *, now: datetime, after: datetime | None) -> list[Interval]:
    """The intervals a tick at ``now`` runs, oldest first: with catchup every interval whose tick is
    after ``after`` (at most :data:`MAX_RUNS_PER_TICK`, the oldest), else only the latest; none past
    the DAG's end date.

    >>> s = DagSchedule(kind="interval", source="1:00:00", interval_seconds=3600, data_interval=True,
    ...                 start=datetime(2024, 1, 1, tzinfo=timezone.utc))
    >>> [i[0].hour for i in due_intervals(s, now=datetime(2024, 1, 1, 3, 30, tzinfo=timezone.utc), after=None)]
    [2]
    """
    found: list[Interval] = []
    for interval in _intervals_back_from(schedule, now):
        tick = interval[1]
        if after is not None and tick <= after:
            break
        if schedule.end is not None and tick > schedule.end:
            continue
        found.append(interval)
        if not schedule.catchup:
            break
    found.reverse()
    return found[:MAX_RUNS_PER_TICK]


def _partition_key(partitions_def: Any, interval: Interval, dag_id: str) -> str | None:
    if not isinstance(partitions_def, TimeWindowPartitionsDefinition):
        return None
    try:
        partitioning = TimeWindowPartitioning.from_dagster(fmt=partitions_def.fmt, description=str(partitions_def))
        return partition_key_for_airflow_run(partitioning, data_interval_start=interval[0], data_interval_end=interval[1])
    except PartitionKeyError as e:
        raise AirliftDagsterError(f"decommissioned DAG {dag_id!r}: no partition for the interval {interval[0]} - {interval[1]}: {e}") from e


def _run_request(plan: DecommissionPlan, interval: Interval, partitions_def: Any) -> RunRequest:
    start, end = (i.astimezone(timezone.utc).isoformat() for i in interval)
    return RunRequest(
        run_key=f"{plan.dag_id}@{start}",
        partition_key=_partition_key(partitions_def, interval, plan.dag_id),
        tags={DECOMMISSIONED_DAG_TAG: plan.dag_id, DATA_INTERVAL_START_TAG: start, DATA_INTERVAL_END_TAG: end},
    )


def _time_schedule(plan: DecommissionPlan, job: Any, partitions_def: Any) -> ScheduleDefinition:
    schedule = plan.schedule

    def evaluate(context: ScheduleEvaluationContext) -> Iterator[RunRequest | SkipReason]:
        now = context.scheduled_execution_time or datetime.now(timezone.utc)
        due = due_intervals(schedule, now=now, after=plan.catchup_from)
        if not due:
            yield SkipReason(f"no interval of DAG {plan.dag_id!r} is due at {now.isoformat()}")
        for interval in due:
            yield _run_request(plan, interval, partitions_def)

    if schedule.kind == "cron":
        tick = schedule.cron
    else:  # a timedelta: tick at every minute that can end an interval
        step = schedule.interval_seconds or 60
        assert schedule.start is not None
        local = schedule.start.astimezone(timezone.utc)
        tick = f"{local.minute} {local.hour} * * *" if step % 86400 == 0 else (f"{local.minute} * * * *" if step % 3600 == 0 else "* * * * *")
    return ScheduleDefinition(
        name=f"{job.name}_schedule",
        cron_schedule=str(tick),
        execution_timezone=schedule.timezone if schedule.kind == "cron" else "UTC",
        job=job,
        execution_fn=evaluate,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Airflow DAG {plan.dag_id!r} ({schedule.source}): {schedule.describe()}",
    )


def _dataset_sensor(plan: DecommissionPlan, job: Any, upstream: Sequence[AssetKey]) -> SensorDefinition:
    """Runs the job when any (or all, since the last run) of the upstream dataset assets has a newer
    materialization; the cursor holds the storage id last seen per upstream asset."""
    schedule = plan.schedule

    def evaluate(context: SensorEvaluationContext) -> Any:
        seen = dict(item.split("=", 1) for item in (context.cursor or "").split(";") if "=" in item)
        latest: dict[str, int] = {}
        for key in upstream:
            records = context.instance.fetch_materializations(key, limit=1).records
            latest[key.to_user_string()] = records[0].storage_id if records else 0
        newer = [k for k, v in latest.items() if v > int(seen.get(k, "0") or 0)]
        baseline = not context.cursor
        ready = bool(newer) and (len(newer) == len(latest) if schedule.condition == "all" else True)
        if baseline or ready:
            context.update_cursor(";".join(f"{k}={v}" for k, v in latest.items()))
        if baseline or not ready:
            return SkipReason(f"waiting for {schedule.condition} of {', '.join(latest)} to be updated")
        now = datetime.now(timezone.utc).isoformat()
        return RunRequest(run_key=f"{plan.dag_id}@{now}", tags={DECOMMISSIONED_DAG_TAG: plan.dag_id,
                                                                DATA_INTERVAL_START_TAG: now, DATA_INTERVAL_END_TAG: now})

    return SensorDefinition(name=f"{job.name}_sensor", job=job, evaluation_fn=evaluate, minimum_interval_seconds=30,
                            default_status=DefaultSensorStatus.RUNNING,
                            description=f"Airflow DAG {plan.dag_id!r}: runs {schedule.describe()}")


def _dataset_keys(defs: Definitions, uris: Sequence[str], dag_id: str) -> list[AssetKey]:
    keys: list[AssetKey] = []
    specs = list(defs.resolve_all_asset_specs())
    for uri in uris:
        match = [s.key for s in specs if s.metadata.get("Airflow URI") == uri]
        if not match:
            raise AirliftDagsterError(
                f"decommissioned DAG {dag_id!r}: no asset for the Airflow dataset {uri!r}; peer datasets with "
                "build_defs_from_airflow_instance(..., dataset_filter=DatasetFilter()) or define an asset with "
                f"metadata {{'Airflow URI': {uri!r}}}"
            )
        keys.append(match[0])
    return keys


def _build_one(plan: DecommissionPlan, defs: Definitions) -> Definitions:
    specs = list(defs.resolve_all_asset_specs())
    graph = defs.resolve_asset_graph()
    keys = [s.key for s in specs
            if dag_handle_of(s) == plan.dag_id or any(dag_id == plan.dag_id for dag_id, _ in task_handles_of(s))]
    executable = [k for k in keys if graph.get(k).is_executable]
    if not executable:
        raise AirliftDagsterError(
            f"decommissioned DAG {plan.dag_id!r}: no executable asset in the definitions is mapped to its tasks "
            "(dag_defs/task_defs); pass the Definitions holding the migrated assets as defs="
        )
    partitions = {graph.get(k).partitions_def for k in executable}
    partitions_def = next(iter(partitions)) if len(partitions) == 1 else None
    job = define_asset_job(
        decommissioned_job_name(plan.dag_id),
        selection=AssetSelection.assets(*executable),
        tags={DECOMMISSIONED_DAG_TAG: plan.dag_id},
        description=f"The assets of the decommissioned Airflow DAG {plan.dag_id!r}",
    )
    out: list[Any] = []
    if plan.schedule.kind in ("cron", "interval"):
        out.append(_time_schedule(plan, job, partitions_def))
    elif plan.schedule.kind == "assets":
        out.append(_dataset_sensor(plan, job, _dataset_keys(defs, plan.schedule.uris, plan.dag_id)))
    dag_key = AssetKey(list(plan.dag_asset_key))
    assets = [] if dag_key in {s.key for s in specs} else [AssetSpec(
        key=dag_key, deps=executable, description=f"Airflow DAG {plan.dag_id!r} (decommissioned; now runs in Dagster)",
        metadata={"Airflow DAG": plan.dag_id, "Decommissioned": True},
        tags={"airlift/airflow_instance": plan.airflow_instance}, kinds={"airflow"})]
    return Definitions(
        jobs=[job],
        schedules=[s for s in out if isinstance(s, ScheduleDefinition)],
        sensors=[s for s in out if isinstance(s, SensorDefinition)],
        assets=assets,
    )


def load_decommissioned_defs(folder: str | Path, *, defs: Definitions) -> Definitions:
    """``defs`` with, for each decommission file in ``folder`` (``<dag_id>.yaml``, written by
    ``airlift decommission``), a job of the DAG's migrated assets and its schedule or dataset sensor
    (running by default), and the DAG's asset if ``defs`` no longer has it. A missing folder adds
    nothing.

    >>> defs = load_decommissioned_defs(Path(__file__).parent / "decommissioned", defs=defs)  # doctest: +SKIP
    """
    root = Path(folder)
    if not root.is_dir():
        return defs
    extra = [_build_one(load_decommission_plan(path), defs)
             for path in sorted(root.iterdir()) if path.suffix == ".yaml" and not path.name.startswith(".")]
    return Definitions.merge(defs, *extra)

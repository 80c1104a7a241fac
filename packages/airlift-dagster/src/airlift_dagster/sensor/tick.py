"""One sensor evaluation as its steps: plan the windows, fetch, build emissions, drop what Dagster
already holds, advance the cursor; then the user's event transformer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from dagster import (
    AssetKey,
    AssetMaterialization,
    SensorEvaluationContext,
)

from airlift_client import (
    AirflowInstance,
    AuditLogUnavailableError,
    ui_links_for,
)
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.sensor._time import _iso
from airlift_dagster.sensor.cursor import AirliftSensorCursor, advance_cursor
from airlift_dagster.sensor.emissions import (
    Emission,
    _late_note,
    _mark_late,
    build_tick_emissions,
    late_warnings,
)
from airlift_dagster.sensor.fetch import Audit, TickRead, read_airflow
from airlift_dagster.sensor.ledger import dagster_built_tries, settle_deliveries
from airlift_dagster.sensor.settings import SensorPlan, SensorSettings
from airlift_dagster.sensor.sources import (
    AuditLogSource,
    ChangeSource,
    RunEventsMissing,
    ScanSource,
)
from airlift_dagster.sensor.windows import TickPlan, plan_tick
from airlift_dagster.transform import AirflowTickView, EventTransformer, apply_event_transformer
from airlift_protocol import (
    WHOLE_DAG_TASK_ID,
    DagRun,
    TaskInstance,
)

log = logging.getLogger("airlift_dagster")


@dataclass
class TickOutcome:
    """What one :func:`evaluate_tick` produced: the Dagster events, the new cursor, the asset keys
    materialized, how many rows were read, whether the tick caught up, and warnings for the user.

    >>> TickOutcome(events=[], cursor=AirliftSensorCursor(), materialized=set(), rows_read=0, caught_up=True).warnings
    []
    """

    events: list[Any]
    cursor: AirliftSensorCursor
    materialized: set[AssetKey]
    rows_read: int
    caught_up: bool
    late_found: int = 0
    #: candidates dropped because Dagster stores them already (or they came twice in this tick)
    dropped_held: int = 0
    #: materializations dropped because a Dagster run launched for the Airflow try built them
    dropped_built: int = 0
    #: event records the ledger read from Dagster (bounded by the keys at stake)
    dagster_records_read: int = 0
    warnings: list[str] = field(default_factory=list)
    runs: list[DagRun] = field(default_factory=list)
    task_instances: list[TaskInstance] = field(default_factory=list)


def evaluate_tick(
    *,
    context: SensorEvaluationContext,
    airflow_instance: AirflowInstance,
    plan: SensorPlan,
    settings: SensorSettings | None = None,
    now: datetime | None = None,
    event_transformer: EventTransformer | None = None,
) -> TickOutcome:
    """One sensor evaluation; raises :class:`AirliftDagsterError` (cursor unchanged) if Airflow fails.

    >>> outcome = evaluate_tick(context=context, airflow_instance=airflow_instance, plan=plan)  # doctest: +SKIP
    >>> outcome.cursor.serialize()  # doctest: +SKIP
    """
    settings = settings or SensorSettings()
    started = time.time()
    parsed = AirliftSensorCursor.parse(context.cursor)
    now = now or settings.clock()
    source_warnings: list[str] = []
    while True:
        source = choose_source(airflow_instance, plan, settings, listening=parsed.listening)
        cursor = parsed.for_source(source.name)
        tick = plan_tick(cursor, now=now, coverage=plan.coverage, settings=settings)  # 1. windows
        audit_due = audit_is_due(cursor, now, settings)
        try:
            read = read_airflow(airflow_instance, plan, tick, cursor.settled if audit_due else [], settings=settings,  # 2. fetch
                                source=source)
            break
        except AuditLogUnavailableError as e:
            source_warnings.append(audit_log_unavailable(plan, settings, e))
        except RunEventsMissing as e:
            source_warnings.append(run_events_missing(plan, e))
            parsed = cursor.with_listening(None, unheard=now)
    candidates = build_tick_emissions(plan, ui_links_for(plan.api, plan.webserver_url), read, now=now,  # 3. emissions
                                      settle=settings.settle)
    built, foreign = dagster_built_tries(context.instance, plan.instance_name, _success_run_ids(plan, read),
                                         mapped={*plan.by_task, *((d, WHOLE_DAG_TASK_ID) for d in plan.by_dag)})
    deliveries = settle_deliveries(candidates.all, instance=context.instance, instance_name=plan.instance_name,  # 4. ledger
                                   built=built, floor=tick.backfill_since)
    kept, tick_warnings = _report_audit(plan, read.audit, deliveries.kept, candidates.audited, settings)
    _log_late_found(plan, tick, candidates.late, kept)
    for warning in foreign:
        log.warning("Airlift sensor: %s", warning)
    new_cursor = advance_cursor(cursor, tick, read.fetched, coverage=plan.coverage, tick_started=started,  # 5. cursor
                                settings=settings, audit=read.audit if audit_due else None, audited_at=now)
    new_cursor = heard(plan, new_cursor, read.fetched.run_event_at)
    events = apply_event_transformer(event_transformer, [e.event for e in kept], _tick_view(plan, read))
    fresh = read.fetched.fresh
    caught_up = tick.fresh is None or (fresh is not None and fresh[1] >= tick.fresh[1])
    return TickOutcome(
        events=events,
        cursor=new_cursor,
        materialized={e.asset_key for e in events if isinstance(e, AssetMaterialization)},
        rows_read=len(read.runs) + len(read.task_instances),
        caught_up=caught_up and not tick.backfill,
        late_found=len(candidates.late),
        dropped_held=deliveries.held + deliveries.repeated,
        dropped_built=deliveries.built,
        dagster_records_read=deliveries.records_read,
        warnings=[*source_warnings, *tick_warnings, *foreign],
        runs=read.runs,
        task_instances=read.task_instances,
    )


#: How long a sensor reads changes by scanning after the audit log could not be read, before it tries again.
AUDIT_LOG_RETRY = 600.0

#: (Airflow instance name, webserver URL) -> ``time.monotonic()`` until which its sensor scans (the audit log was refused).
_scan_until: dict[tuple[str, str], float] = {}


def choose_source(airflow_instance: AirflowInstance, plan: SensorPlan, settings: SensorSettings, *,
                  listening: datetime | None = None) -> ChangeSource:
    """The change source of this tick (:mod:`airlift_dagster.sensor.sources`): the audit log unless
    the settings say ``"scan"`` or it was refused in the last :data:`AUDIT_LOG_RETRY` seconds
    (``listening``: since when it takes runs from run-event rows, :attr:`AirliftSensorCursor.listening`)."""
    refused_until = _scan_until.get((plan.instance_name, plan.webserver_url), 0.0)
    if settings.change_source == "scan" or (settings.change_source == "auto" and time.monotonic() < refused_until):
        return ScanSource(airflow_instance, plan.dag_ids)
    return AuditLogSource(airflow_instance, plan.dag_ids, listening=listening, read_started=settings.mirror_runs)


def heard(plan: SensorPlan, cursor: AirliftSensorCursor, run_event_at: datetime | None) -> AirliftSensorCursor:
    """The cursor after a tick that read a run-event row written at ``run_event_at`` (the earliest it
    read; ``None``: none): airlift-airflow's listener writes them, so the windows starting after it
    read their runs from those rows (unless a run was found ended without its row after that time)."""
    if cursor.listening is not None or run_event_at is None or (cursor.unheard is not None and run_event_at <= cursor.unheard):
        return cursor
    log.info("Airlift sensor %s: Airflow writes run-event rows (airlift-airflow's listener) since %s at least; the windows "
             "after it read their runs from those rows, not by a scan of dag_run", plan.instance_name, _iso(run_event_at))
    return cursor.with_listening(run_event_at)


def run_events_missing(plan: SensorPlan, error: RunEventsMissing) -> str:
    """Answer a run found ended without its run-event row: the tick reads runs by scan again (the
    windows read from run-event rows since are read again, as changed, after the lateness window),
    until it reads a run-event row written after now. Returns the warning (logged too)."""
    warning = (f"Airflow instance {plan.instance_name!r}: {error}. The sensor reads runs by updated_at instead (a scan of "
               f"Airflow's dag_run table per tick; the windows read since are read again after the lateness window) until "
               f"it reads a run-event row written from now on.")
    log.warning("Airlift sensor: %s", warning)
    return warning


def audit_log_unavailable(plan: SensorPlan, settings: SensorSettings, error: AuditLogUnavailableError) -> str:
    """Answer an audit log Airflow refused: with ``change_source="audit_log"`` the tick fails (the
    cursor does not move); with ``"auto"`` the next tries scan for :data:`AUDIT_LOG_RETRY` seconds.
    Returns the warning (logged too)."""
    if settings.change_source == "audit_log":
        raise AirliftDagsterError(
            f"Airlift sensor for Airflow instance {plan.instance_name!r}: {error} The sensor setting change_source='audit_log' "
            "needs it; grant the permission, or set change_source='auto' to read changes by scanning (slower on a large "
            "metadata database). The cursor did not move."
        ) from error
    _scan_until[(plan.instance_name, plan.webserver_url)] = time.monotonic() + AUDIT_LOG_RETRY
    warning = (f"Airflow instance {plan.instance_name!r}: the audit log cannot be read ({error}) The sensor reads changes by "
               f"updated_at instead, a scan of Airflow's task_instance and dag_run tables per tick that grows with the metadata "
               f"database; it tries the audit log again in {int(AUDIT_LOG_RETRY // 60)} minutes.")
    log.warning("Airlift sensor: %s", warning)
    return warning


def audit_is_due(cursor: AirliftSensorCursor, now: datetime, settings: SensorSettings) -> bool:
    """Whether this tick counts the settled windows again (the late-commit audit): when there are
    some, at most once per ``settings.audit_interval`` of the sensor's clock."""
    return bool(cursor.settled) and (cursor.audited_at is None or now - cursor.audited_at >= settings.audit_interval)


def _success_run_ids(plan: SensorPlan, read: TickRead) -> list[str]:
    """The Airflow runs whose successes may have been built by a Dagster run: those of successful
    tries of mapped tasks, successful runs of DAGs with assets mapped to the DAG itself, and
    successful runs of DAGs with an executable DAG asset (a Dagster run may have triggered them)."""
    return [*(t.run_id for t in read.task_instances if t.is_success and (t.dag_id, t.task_id) in plan.by_task),
            *(r.run_id for r in read.runs if r.is_success and (r.dag_id in plan.by_dag or r.dag_id in plan.triggered_dags))]


def _log_late_found(plan: SensorPlan, tick: TickPlan, late: Sequence[Emission], kept: Sequence[Emission]) -> None:
    if not late or tick.sweep is None:
        return
    late_ids = {id(e) for e in late}
    new_late = sum(1 for e in kept if id(e) in late_ids and isinstance(e.event, AssetMaterialization))
    if new_late:
        log.warning("Airlift sensor %s: %d materialization(s) of rows committed late, found when re-reading the "
                    "changes of %s..%s", plan.instance_name, new_late, _iso(tick.sweep.lo), _iso(tick.sweep.hi))


def _tick_view(plan: SensorPlan, read: TickRead) -> AirflowTickView:
    return AirflowTickView(
        instance_name=plan.instance_name, runs=tuple(read.partition_runs.values()), task_instances=tuple(read.task_instances),
        dataset_events=tuple([*read.late_events, *read.fresh_events]), dag_asset_keys=MappingProxyType(dict(plan.dag_asset_keys)),
        task_asset_keys=MappingProxyType(dict(plan.by_task)), dataset_asset_keys=MappingProxyType(dict(plan.dataset_keys)),
    )


def _report_audit(plan: SensorPlan, audit: Audit, kept: list[Emission], audited: Sequence[Emission],
                  settings: SensorSettings) -> tuple[list[Emission], list[str]]:
    """Mark the audit's late materializations as such and word the warnings about them."""
    if audit.window is None and not audit.unread:
        return kept, []
    note = _late_note(settings.lateness_window)
    audited_ids = {id(e) for e in audited}
    late = [e for e in kept if id(e) in audited_ids]
    marked = [_mark_late(e, note) if id(e) in audited_ids else e for e in kept]
    found = late_warnings(plan.instance_name, audit, late, sensor_name=f"{plan.instance_name}__airflow_sensor",
                          lateness=settings.lateness_window)
    for warning in found:
        log.warning("Airlift sensor: %s", warning)
    return marked, found


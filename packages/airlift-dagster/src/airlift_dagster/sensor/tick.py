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

from airlift_client import AirflowInstance, AirliftClientError, ui_links_for
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.sensor._time import _iso
from airlift_dagster.sensor.cursor import AirliftSensorCursor, advance_cursor, rows_digest
from airlift_dagster.sensor.emissions import (
    Emission,
    _late_note,
    _mark_late,
    build_dataset_emissions,
    build_emissions,
    late_warnings,
)
from airlift_dagster.sensor.fetch import (
    Audit,
    audit_settled,
    complete_runs,
    fetch_changes,
    fetch_dataset_events,
    fetch_partition_runs,
)
from airlift_dagster.sensor.ledger import (
    STORE_MARGIN,
    dagster_built_tries,
    drop_held,
    read_held_events,
)
from airlift_dagster.sensor.settings import SensorPlan, SensorSettings
from airlift_dagster.sensor.windows import plan_tick
from airlift_dagster.transform import AirflowTickView, EventTransformer, apply_event_transformer
from airlift_protocol import (
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
    dropped_held: int = 0
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
    cursor = AirliftSensorCursor.parse(context.cursor)
    now = now or settings.clock()
    tick = plan_tick(cursor, now=now, coverage=plan.coverage, settings=settings)
    airflow_instance.assume_api_version(plan.api)
    try:
        fetched = fetch_changes(airflow_instance, tick, dag_ids=plan.dag_ids, settings=settings)
        audit = audit_settled(airflow_instance, cursor.settled, dag_ids=plan.dag_ids, budget=settings.max_rows_per_tick)
        swept_changed = tick.sweep is not None and rows_digest(fetched.sweep_runs, fetched.sweep_tis) != (tick.sweep.rows, tick.sweep.digest)
        # the task rows each group emits: the rows read, plus those read with their run (complete_runs)
        backfill_tis, sweep_tis, audit_tis, fresh_tis = (list(fetched.backfill_tis), list(fetched.sweep_tis), list(audit.tis),
                                                         list(fetched.fresh_tis))
        completing = complete_runs(airflow_instance, plan, [(fetched.backfill_runs, backfill_tis),
                                                            (fetched.sweep_runs if swept_changed else [], sweep_tis),
                                                            (audit.runs, audit_tis), (fetched.fresh_runs, fresh_tis)])
        all_runs = [*fetched.backfill_runs, *fetched.sweep_runs, *fetched.fresh_runs, *audit.runs]
        all_tis = [*backfill_tis, *sweep_tis, *fresh_tis, *audit_tis]
        fresh_events = fetch_dataset_events(airflow_instance, plan, [fetched.fresh] if fetched.fresh else [])
        late_events = fetch_dataset_events(airflow_instance, plan, [(tick.sweep.lo, tick.sweep.hi)] if swept_changed and tick.sweep else [])
        partition_runs = fetch_partition_runs(airflow_instance, plan, all_runs, all_tis)
    except AirliftClientError as e:
        raise AirliftDagsterError(
            f"Airlift sensor for Airflow instance {plan.instance_name!r}: {e}. The cursor did not move; the next tick catches up."
        ) from e
    links = ui_links_for(plan.api, plan.webserver_url)
    built = dagster_built_tries(context.instance, plan.instance_name,
                                [t.run_id for t in all_tis if t.is_success and (t.dag_id, t.task_id) in plan.by_task])
    skew = settings.lateness_window
    # A row read now changed after the previous tick's upper bound (its start minus ``settle``); a push
    # of its event can have been stored from then on.
    recent = (cursor.tick_started - STORE_MARGIN - settings.settle.total_seconds()) if cursor.tick_started else (now - settings.history_window - skew).timestamp()
    emissions: list[Emission] = []
    late: list[Emission] = []
    late_found = 0
    if fetched.backfill_runs:
        emissions += build_emissions(plan, links, fetched.backfill_runs, backfill_tis, built=built, recent_since=recent,
                                     changed_after=now, skew=skew, with_checks=False, partition_runs=partition_runs,
                                     completing=completing)
    if swept_changed:
        late = build_emissions(plan, links, fetched.sweep_runs, sweep_tis, built=built, recent_since=recent,
                               changed_after=now, skew=skew, partition_runs=partition_runs, completing=completing)
        late += build_dataset_emissions(plan, links, late_events, held_since=lambda e: (e.timestamp - skew).timestamp())
        emissions += late
        late_found = len(late)
    audited: list[Emission] = []
    if audit.window is not None:  # rows committed later than the lateness window
        audited = build_emissions(plan, links, audit.runs, audit_tis, built=built, recent_since=recent, changed_after=now, skew=skew,
                                  partition_runs=partition_runs, completing=completing)
        emissions += audited
    if fetched.fresh is not None:
        emissions += build_emissions(plan, links, fetched.fresh_runs, fresh_tis, built=built, recent_since=recent,
                                     changed_after=fetched.fresh[0] - settings.settle, skew=skew, partition_runs=partition_runs,
                                     completing=completing)
        emissions += build_dataset_emissions(plan, links, fresh_events, held_since=lambda e: recent)
    wanted = [e for e in emissions if e.event_id is not None and e.held_since is not None]
    held = read_held_events(context.instance, plan.instance_name, min(e.held_since for e in wanted if e.held_since is not None)) if wanted else set()
    kept = drop_held(emissions, held)
    kept, tick_warnings = _report_audit(plan, audit, kept, audited, settings)
    if late_found and tick.sweep is not None:
        late_ids = {id(e) for e in late}
        new_late = sum(1 for e in kept if id(e) in late_ids and isinstance(e.event, AssetMaterialization))
        if new_late:
            log.warning("Airlift sensor %s: %d materialization(s) of rows committed late, found when re-reading the "
                        "changes of %s..%s", plan.instance_name, new_late, _iso(tick.sweep.lo), _iso(tick.sweep.hi))
    new_cursor = advance_cursor(cursor, tick, fetched, coverage=plan.coverage, tick_started=started, settings=settings, audit=audit)
    view = AirflowTickView(
        instance_name=plan.instance_name, runs=tuple(partition_runs.values()), task_instances=tuple(all_tis),
        dataset_events=tuple([*late_events, *fresh_events]), dag_asset_keys=MappingProxyType(dict(plan.dag_asset_keys)),
        task_asset_keys=MappingProxyType(dict(plan.by_task)), dataset_asset_keys=MappingProxyType(dict(plan.dataset_keys)),
    )
    events: list[Any] = apply_event_transformer(event_transformer, [e.event for e in kept], view)
    caught_up = fetched.fresh is None or (tick.fresh is not None and fetched.fresh[1] >= tick.fresh[1])
    return TickOutcome(
        events=events,
        cursor=new_cursor,
        materialized={e.asset_key for e in events if isinstance(e, AssetMaterialization)},
        rows_read=len(all_runs) + len(all_tis),
        caught_up=caught_up and not tick.backfill,
        late_found=late_found,
        dropped_held=len(emissions) - len(kept),
        warnings=tick_warnings,
        runs=all_runs,
        task_instances=all_tis,
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


"""Step 3 (pure): the Dagster events of the rows read, in Airflow's execution order, each with its
identity; and how rows committed later than the lateness window are marked and warned about."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    MetadataValue,
)

from airlift_client import AirflowUiLinks
from airlift_dagster.sensor._time import _iso
from airlift_dagster.sensor.fetch import Audit, TickRead
from airlift_dagster.sensor.ledger import RUN_START_METADATA
from airlift_dagster.sensor.settings import SensorPlan
from airlift_protocol import (
    ApiVersion,
    DagRun,
    DatasetEvent,
    PartitionKeyError,
    TaskInstance,
    partition_key_for_airflow_run,
)
from airlift_protocol.events import (
    DAG_RUN_CHECK_NAME,
    PARTITION_CHECK_NAME,
    TASK_RUN_CHECK_NAME,
    MetadataEntry,
    dag_run_success_event,
    identity_metadata,
    task_check_metadata,
    task_success_event,
)
from airlift_protocol.tags import WHOLE_DAG_TASK_ID, AirflowEventId, DatasetEventId

#: Late rows named in a warning (the rest are counted).
LATE_NAMED = 10


@dataclass(frozen=True)
class Emission:
    """One candidate event. ``event_id``: the Airflow identity it carries (a check evaluation or an
    observation carries the identity of the try or run it reports); ``occurred``: when that happened
    in Airflow (the ledger's :func:`~airlift_dagster.sensor.ledger.stored_since` reads Dagster from
    there on); ``ti``: the try a task event reports (the ledger asks whether a Dagster run built it);
    ``whole_dag``: set on the materialization of an asset mapped to a whole DAG, reported for the
    DAG run's success (the ledger asks whether a whole-DAG migration built it in that run; ``ti`` is
    then the try of the task that ran the whole DAG, when the tick read it); ``dag_run``: set on the
    DAG asset's materialization of a DAG run's success (the ledger asks whether a Dagster run
    triggered that DAG run and so reports it)."""

    event: Any
    event_id: AirflowEventId | DatasetEventId | None = None
    occurred: datetime | None = None
    ti: TaskInstance | None = None
    whole_dag: bool = False
    dag_run: bool = False


def dagster_metadata(entries: Mapping[str, MetadataEntry]) -> dict[str, Any]:
    """Shared event metadata (:mod:`airlift_protocol.events`) as Dagster metadata values."""
    out: dict[str, Any] = {}
    for name, entry in entries.items():
        if entry.kind == "url":
            out[name] = MetadataValue.url(str(entry.value))
        elif entry.kind == "timestamp":
            out[name] = MetadataValue.timestamp(float(entry.value))
        else:
            out[name] = entry.value
    return out


def _when(value: datetime | None) -> float:
    return value.timestamp() if value else 0.0


def build_emissions(
    plan: SensorPlan,
    links: AirflowUiLinks,
    runs: Sequence[DagRun],
    tis: Sequence[TaskInstance],
    *,
    changed_after: datetime | None,
    with_checks: bool = True,
    partition_runs: Mapping[tuple[str, str], DagRun] | None = None,
    completing: frozenset[tuple[str, str, str, int]] = frozenset(),
) -> list[Emission]:
    """Step 3 (pure): the ordered candidate events of the given rows (the ledger then drops what
    was delivered already).

    A row whose event (end) happened before ``changed_after`` changed after the fact (marked, noted,
    committed late or backfilled): its materialization says so. Task rows in ``completing`` (dag,
    run, task, map index) were read with their run (:func:`complete_runs`): they are not marked.
    """
    groups: dict[tuple[str, str], list[TaskInstance]] = defaultdict(list)
    for ti in tis:
        groups[(ti.dag_id, ti.run_id)].append(ti)
    run_rows = {(r.dag_id, r.run_id): r for r in runs}
    order: list[tuple[tuple[float, str, str], tuple[str, str]]] = []
    for key in {*groups, *run_rows}:
        ends = [_when(t.end_date) for t in groups.get(key, ())]
        run = run_rows.get(key)
        if run is not None:
            ends.append(_when(run.end_date or run.start_date))
        order.append(((max(ends, default=0.0), key[0], key[1]), key))
    out: list[Emission] = []
    for _, key in sorted(order):
        dag_id, run_id = key
        run_url = links.run_url(dag_id, run_id)
        task_rows = sorted(groups.get(key, ()), key=lambda t: (plan.task_rank.get((t.dag_id, t.task_id), 1 << 30), _when(t.end_date),
                                                                t.task_id, t.map_index))
        for ti in task_rows:
            out.extend(_task_emissions(plan, links, run_url, ti, changed_after=changed_after, with_checks=with_checks,
                                       run=(partition_runs or run_rows).get(key),
                                       completing=(ti.dag_id, ti.run_id, ti.task_id, ti.map_index) in completing))
        run = run_rows.get(key)
        if run is not None:
            out.extend(_run_emissions(plan, links, run_url, run, changed_after=changed_after, with_checks=with_checks,
                                      tis=groups.get(key, ())))
    return out


def _changed(end: datetime | None, changed_after: datetime | None) -> bool:
    """Whether a row's event happened before the window it was read in began (it changed later)."""
    return end is not None and changed_after is not None and end < changed_after


def partition_of(plan: SensorPlan, key: AssetKey, run: DagRun | None, ti: TaskInstance) -> str | None:
    """The partition key a try's materialization of ``key`` carries (``None``: the asset is not
    time-partitioned); :class:`PartitionKeyError` when the run names no single partition."""
    partitioning = plan.partitioning.get(key)
    if partitioning is None:
        return None
    if run is None:
        raise PartitionKeyError(f"the Airflow run {ti.run_id!r} of DAG {ti.dag_id!r} was not read, so its logical date is unknown")
    return partition_key_for_airflow_run(partitioning, logical_date=run.logical_date, data_interval_start=run.data_interval_start,
                                         data_interval_end=run.data_interval_end, run_id=run.run_id)


def _task_emissions(
    plan: SensorPlan, links: AirflowUiLinks, run_url: str, ti: TaskInstance, *, changed_after: datetime | None, with_checks: bool,
    run: DagRun | None = None, completing: bool = False,
) -> list[Emission]:
    keys = plan.by_task.get((ti.dag_id, ti.task_id))
    if not keys or not ti.is_finished or ti.state == "skipped":
        return []
    changed = _changed(ti.end_date, changed_after)
    if completing:  # read with its run, not because its row changed: maybe reported already, never "marked"
        if not ti.is_success:
            return []
        changed = False
    reported = task_success_event(
        instance_name=plan.instance_name, links=links, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
        map_index=ti.map_index, try_number=ti.try_number, start_date=ti.start_date, end_date=ti.end_date, marked=changed,
    )
    event_id = reported.event_id
    identity = dagster_metadata(identity_metadata(event_id))
    occurred = ti.end_date or ti.start_date
    out: list[Emission] = []
    if ti.is_success:
        metadata = dagster_metadata(reported.metadata)
        for key in sorted(keys, key=lambda k: plan.order.get(k, 0)):
            try:
                partition = partition_of(plan, key, run, ti)
            except PartitionKeyError as e:
                out.append(Emission(AssetCheckEvaluation(
                    asset_key=key, check_name=PARTITION_CHECK_NAME, passed=False, severity=AssetCheckSeverity.ERROR,
                    metadata={"Airflow run": MetadataValue.url(run_url), "Try number": ti.try_number, **identity},
                    description=f"Not materialized: {e}",
                ), event_id, occurred, ti))
                continue
            out.append(Emission(AssetMaterialization(
                asset_key=key, description=reported.description, metadata=metadata, tags=reported.tags(), partition=partition,
            ), event_id, occurred, ti))
            if partition is not None:
                out.append(Emission(AssetCheckEvaluation(
                    asset_key=key, check_name=PARTITION_CHECK_NAME, passed=True, partition=partition,
                    metadata={"Airflow run": MetadataValue.url(run_url), "Partition": partition, **identity},
                ), event_id, occurred, ti))
    if with_checks and (not changed or out):
        failed = not ti.is_success
        out.extend(
            Emission(AssetCheckEvaluation(
                asset_key=key, check_name=TASK_RUN_CHECK_NAME, passed=not failed, severity=AssetCheckSeverity.ERROR,
                metadata={**dagster_metadata(task_check_metadata(run_url=run_url, state=str(ti.state), try_number=ti.try_number)),
                          **identity},
                description=f"Airflow task {ti.dag_id}.{ti.task_id} ended {ti.state} in run {ti.run_id}: {run_url}" if failed else None,
            ), event_id, occurred, ti)
            for key in keys
        )
    return out


def build_dataset_emissions(plan: SensorPlan, links: AirflowUiLinks, events: Sequence[DatasetEvent]) -> list[Emission]:
    """Step 3b (pure): one materialization of the dataset's asset per Airflow dataset / asset event,
    oldest first."""
    word = "dataset" if plan.api is ApiVersion.V1 else "asset"
    out: list[Emission] = []
    for event in sorted(events, key=lambda e: (e.timestamp, e.uri)):
        key = plan.dataset_keys.get(event.uri)
        if key is None:
            continue
        event_id = DatasetEventId(plan.instance_name, event.uri, _iso(event.timestamp), dag_id=event.source_dag_id or "",
                                  run_id=event.source_run_id or "", task_id=event.source_task_id or "", map_index=event.source_map_index)
        metadata: dict[str, Any] = {f"Airflow {word} URI": event.uri, "Event time": MetadataValue.timestamp(event.timestamp)}
        if event.name != event.uri:
            metadata[f"Airflow {word} name"] = event.name
        if event.source_dag_id and event.source_run_id:
            metadata["Airflow run"] = MetadataValue.url(links.run_url(event.source_dag_id, event.source_run_id))
            metadata["Airflow run id"] = event.source_run_id
            metadata["Source"] = f"{event.source_dag_id}.{event.source_task_id or '?'}"
            if event.source_map_index >= 0:
                metadata["Map index"] = event.source_map_index
        else:
            metadata["Source"] = "outside a task (REST API or another system)"
        if event.extra:
            metadata["Extra"] = MetadataValue.json(json.loads(json.dumps(dict(event.extra), default=str)))
        source = f" by {event.source_dag_id}.{event.source_task_id} in run {event.source_run_id}" if event.source_task_id else ""
        out.append(Emission(AssetMaterialization(asset_key=key, description=f"Airflow {word} {event.uri} updated{source}",
                                                 metadata=metadata, tags=event_id.tags()), event_id, event.timestamp))
    return out


def _run_emissions(
    plan: SensorPlan, links: AirflowUiLinks, run_url: str, run: DagRun, *, changed_after: datetime | None, with_checks: bool,
    tis: Sequence[TaskInstance] = (),
) -> list[Emission]:
    dag_key = plan.dag_asset_keys[run.dag_id]
    if run.state == "running":
        if changed_after is not None and run.start_date is not None and run.start_date >= changed_after:
            running = AirflowEventId(plan.instance_name, run.dag_id, run.run_id)
            return [Emission(AssetObservation(
                asset_key=dag_key, description=f"Airflow DAG run {run.run_id} is running",
                metadata={"Airflow run": MetadataValue.url(run_url), "Airflow run state": "running",
                          RUN_START_METADATA: MetadataValue.timestamp(run.start_date),
                          **dagster_metadata(identity_metadata(running))},
            ), running, run.start_date)]
        return []
    if not run.is_finished or run.end_date is None:
        return []
    changed = _changed(run.end_date, changed_after)
    reported = dag_run_success_event(instance_name=plan.instance_name, links=links, dag_id=run.dag_id, run_id=run.run_id,
                                     run_type=run.run_type, start_date=run.start_date, end_date=run.end_date, marked=changed)
    event_id = reported.event_id
    metadata = {**dagster_metadata(reported.check_metadata), **dagster_metadata(identity_metadata(event_id))}
    out: list[Emission] = []
    if run.is_success:
        # the assets mapped to the DAG as a whole: built by this run (the DAG run's identity); a
        # whole-DAG migration built them in Dagster (the ledger drops them then)
        runner = next((t for t in tis if t.task_id == WHOLE_DAG_TASK_ID and t.map_index == -1), None)
        out.extend(
            Emission(AssetMaterialization(asset_key=key, description=reported.description, metadata=dagster_metadata(reported.metadata),
                                          tags=reported.tags()), event_id, run.end_date, runner, whole_dag=True)
            for key in sorted(plan.by_dag.get(run.dag_id, ()), key=lambda k: (plan.order.get(k, 0), str(k)))
        )
        out.append(Emission(AssetMaterialization(asset_key=dag_key, description=reported.description,
                                                 metadata=dagster_metadata(reported.metadata), tags=reported.tags()), event_id, run.end_date,
                            dag_run=True))
    if with_checks and (not changed or out):
        out.append(Emission(AssetCheckEvaluation(
            asset_key=dag_key, check_name=DAG_RUN_CHECK_NAME, passed=run.is_success, severity=AssetCheckSeverity.ERROR, metadata=metadata,
            description=None if run.is_success else f"Airflow DAG run {run.run_id} failed: {run_url}",
        ), event_id, run.end_date))
    return out


def _late_note(lateness: timedelta) -> str:
    return (f"committed to Airflow more than the lateness window ({lateness}) after its update time; found by the "
            "late-commit audit (a larger lateness_window reports such rows on time)")


def _mark_late(emission: Emission, note: str) -> Emission:
    event = emission.event
    if not isinstance(event, AssetMaterialization):
        return emission
    marked = AssetMaterialization(asset_key=event.asset_key, description=event.description, partition=event.partition,
                                  metadata={**event.metadata, "Committed late": note}, tags=event.tags)
    return replace(emission, event=marked)


def late_warnings(instance_name: str, audit: Audit, late: Sequence[Emission], *, sensor_name: str,
                  lateness: timedelta) -> list[str]:
    """Step 5c (pure): one warning per finding of the audit, naming the DAG runs and tasks reported
    late, or, for a window too large to re-read, how to recover its rows."""
    out: list[str] = []
    named = sorted({
        f"{e.event_id.dag_id}/{e.event_id.run_id}" + (f"/{e.event_id.task_id}" if e.event_id.task_id else "")
        for e in late if e.event_id is not None and isinstance(e.event, AssetMaterialization)
    })
    if named and audit.window is not None:
        listed = ", ".join(named[:LATE_NAMED]) + (f" and {len(named) - LATE_NAMED} more" if len(named) > LATE_NAMED else "")
        out.append(
            f"Airflow instance {instance_name!r}: {len(named)} run/task result(s) were committed more than lateness_window "
            f"({lateness}) late, into {_iso(audit.window.lo)}..{_iso(audit.window.hi)}, and are reported now: {listed}. "
            "Set a larger lateness_window to report such commits on time."
        )
    for window, rows in audit.unread:
        out.append(
            f"Airflow instance {instance_name!r}: {rows - window.rows} row(s) were committed more than lateness_window "
            f"({lateness}) late into {_iso(window.lo)}..{_iso(window.hi)}, a window too large to re-read in one tick; they "
            f"are NOT reported. To report them: delete the sensor's cursor (`dagster sensor cursor {sensor_name} --delete`) "
            f"with a history_window reaching back to {_iso(window.lo)}; events Dagster already holds are not repeated."
        )
    return out



@dataclass
class TickEmissions:
    """A tick's candidates in emission order (``all``), and which of them come from the re-read of a
    window after the lateness window (``late``) and from the late-commit audit (``audited``)."""

    all: list[Emission]
    late: list[Emission]
    audited: list[Emission]


def build_tick_emissions(plan: SensorPlan, links: AirflowUiLinks, read: TickRead, *, now: datetime,
                         settle: timedelta) -> TickEmissions:
    """Step 3 (pure): the candidates of every group a tick read, in this order: DAGs newly mapped
    (backfilled, without checks), the window read again after the lateness window, rows committed
    later than that (the audit), the fresh window."""
    fetched = read.fetched
    common: dict[str, Any] = {"partition_runs": read.partition_runs, "completing": read.completing}
    out = TickEmissions(all=[], late=[], audited=[])
    if fetched.backfill_runs:
        out.all += build_emissions(plan, links, fetched.backfill_runs, read.backfill_tis, changed_after=now, with_checks=False, **common)
    if read.swept_changed:
        out.late = build_emissions(plan, links, fetched.sweep_runs, read.sweep_tis, changed_after=now, **common)
        out.late += build_dataset_emissions(plan, links, read.late_events)
        out.all += out.late
    if read.audit.window is not None:
        out.audited = build_emissions(plan, links, read.audit.runs, read.audit_tis, changed_after=now, **common)
        out.all += out.audited
    if fetched.fresh is not None:
        out.all += build_emissions(plan, links, fetched.fresh_runs, read.fresh_tis, changed_after=fetched.fresh[0] - settle, **common)
        out.all += build_dataset_emissions(plan, links, read.fresh_events)
    return out

"""The sensor that turns Airflow history into Dagster events, exactly once.

Each tick reads DAG runs that finished in ``[high_water - overlap, now]`` (batch endpoint, ordered by
end date), skips those already processed (their keys stay in the cursor while inside the overlap
window), reads the task instances of the new runs in batches, and emits, per run in end-date order:

1. one ``AssetMaterialization`` per asset of each successful task instance (dependency order;
   per map index for mapped tasks), unless Dagster itself built it (a migrated task);
2. for a successful run, one materialization of the DAG asset;
3. ``AssetCheckEvaluation``s of the ``airflow_task_succeeded`` / ``airflow_dag_run_succeeded`` checks:
   failures show up in Dagster as failed checks with the Airflow run link.

Running DAG runs are reported once as ``AssetObservation``s of the DAG asset. The cursor only moves
with the events of the runs actually processed, so a tick that fails (Airflow down) or runs out of
its time budget loses nothing: the next tick resumes where it stopped. The ``overlap`` window covers
runs whose end date is committed late (clock skew, slow transactions) without emitting twice.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSelection,
    AssetSpec,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from airlift_client import AirflowInstance, AirflowUiLinks, AirliftClientError, ui_links_for
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.state import AirflowInstanceState
from airlift_dagster.ticks import build_sensor_result
from airlift_protocol import (
    AIRFLOW_RUN_ID_RUN_TAG,
    DagRun,
    TaskInstance,
    parse_dagster_run_tags,
    task_is_marked_migrated,
)

__all__ = ["CURSOR_VERSION", "AirliftSensorCursor", "SensorPlan", "build_airflow_sensor", "evaluate_tick"]

CURSOR_VERSION = 1
TASK_RUN_CHECK_NAME = "airflow_task_succeeded"
DAG_RUN_CHECK_NAME = "airflow_dag_run_succeeded"
RUN_BATCH = 50


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _run_key(run: DagRun) -> str:
    return f"{run.dag_id}\x1f{run.run_id}\x1f{_iso(run.end_date) if run.end_date else ''}"


@dataclass
class AirliftSensorCursor:
    """The sensor's progress: a small versioned JSON record.

    ``high_water``: latest end date processed; ``done``: keys (dag, run, end date) of runs processed
    whose end date is inside the overlap window; ``running``: runs already reported as running.
    """

    high_water: datetime | None = None
    done: dict[str, str] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)

    def serialize(self) -> str:
        return json.dumps(
            {"v": CURSOR_VERSION, "hw": _iso(self.high_water) if self.high_water else None, "done": self.done, "running": self.running},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def parse(cls, text: str | None) -> AirliftSensorCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor format {data.get('v')!r}")
            hw = data.get("hw")
            return cls(
                high_water=datetime.fromisoformat(hw) if hw else None,
                done=dict(data.get("done") or {}),
                running=list(data.get("running") or []),
            )
        except (ValueError, TypeError, AttributeError) as e:
            raise AirliftDagsterError(
                f"the Airlift sensor cursor {text[:80]!r} cannot be read ({e}); reset the sensor's cursor in the UI"
            ) from e


@dataclass(frozen=True)
class SensorPlan:
    """Everything a tick needs that is known when definitions are built (no I/O)."""

    instance_name: str
    dag_ids: frozenset[str]
    by_task: Mapping[tuple[str, str], Sequence[AssetKey]]
    order: Mapping[AssetKey, int]
    dag_asset_keys: Mapping[str, AssetKey]
    user_check_keys: Mapping[AssetKey, Sequence[AssetCheckKey]]
    migrated_tasks: frozenset[tuple[str, str]]
    api_state: AirflowInstanceState

    @classmethod
    def build(
        cls,
        *,
        state: AirflowInstanceState,
        by_task: Mapping[tuple[str, str], Sequence[AssetKey]],
        specs: Sequence[AssetSpec],
        dag_asset_keys: Mapping[str, AssetKey],
        user_check_keys: Mapping[AssetKey, Sequence[AssetCheckKey]],
    ) -> SensorPlan:
        return cls(
            instance_name=state.instance_name,
            dag_ids=frozenset(d.dag_id for d in state.dags),
            by_task=dict(by_task),
            order=_topological_order(specs),
            dag_asset_keys=dict(dag_asset_keys),
            user_check_keys=dict(user_check_keys),
            migrated_tasks=frozenset(
                (dag_id, t.task_id) for dag_id, tasks in state.tasks.items() for t in tasks if task_is_marked_migrated(t.doc_md)
            ),
            api_state=state,
        )


def _topological_order(specs: Sequence[AssetSpec]) -> dict[AssetKey, int]:
    deps = {spec.key: [d.asset_key for d in spec.deps] for spec in specs}
    order: dict[AssetKey, int] = {}
    visiting: set[AssetKey] = set()

    def visit(key: AssetKey) -> None:
        if key in order or key in visiting:
            return
        visiting.add(key)
        for dep in deps.get(key, ()):
            visit(dep)
        visiting.discard(key)
        order[key] = len(order)

    for key in sorted(deps, key=lambda k: k.to_user_string()):
        visit(key)
    return order


def _dagster_built(context: SensorEvaluationContext, runs: Sequence[DagRun]) -> set[tuple[str, str, str]]:
    """(dag, task, run) of Airflow task runs that launched a Dagster run (migrated tasks)."""
    if context.instance is None or not runs:
        return set()
    records = context.instance.get_run_records(filters=RunsFilter(tags={AIRFLOW_RUN_ID_RUN_TAG: [r.run_id for r in runs]}))
    built = set()
    for record in records:
        ref = parse_dagster_run_tags(record.dagster_run.tags)
        if ref is not None:
            built.add((ref.dag_id, ref.task_id, ref.run_id))
    return built


def _latest_tries(tis: Iterable[TaskInstance]) -> list[TaskInstance]:
    latest: dict[tuple[str, str, str, int], TaskInstance] = {}
    for ti in tis:
        current = latest.get(ti.key)
        if current is None or ti.try_number >= current.try_number:
            latest[ti.key] = ti
    return list(latest.values())


def _run_events(
    plan: SensorPlan,
    links: AirflowUiLinks,
    run: DagRun,
    tis: Sequence[TaskInstance],
    dagster_built: set[tuple[str, str, str]],
) -> tuple[list[Any], set[AssetKey]]:
    run_url = links.run_url(run.dag_id, run.run_id)
    materializations: list[tuple[int, AssetMaterialization]] = []
    checks: list[AssetCheckEvaluation] = []
    by_task: dict[str, list[TaskInstance]] = defaultdict(list)
    for ti in tis:
        by_task[ti.task_id].append(ti)
    for task_id, task_tis in sorted(by_task.items()):
        keys = plan.by_task.get((run.dag_id, task_id))
        if not keys:
            continue
        migrated = (run.dag_id, task_id, run.run_id) in dagster_built or (run.dag_id, task_id) in plan.migrated_tasks
        for ti in sorted(task_tis, key=lambda t: t.map_index):
            if not ti.is_success or migrated:
                continue
            metadata: dict[str, Any] = {
                "Airflow run": MetadataValue.url(run_url),
                "Airflow task log": MetadataValue.url(links.log_url(run.dag_id, run.run_id, task_id, try_number=ti.try_number, map_index=ti.map_index)),
                "Try number": ti.try_number,
                "Airflow run id": run.run_id,
            }
            if ti.start_date:
                metadata["Start date"] = MetadataValue.timestamp(ti.start_date)
            if ti.end_date:
                metadata["End date"] = MetadataValue.timestamp(ti.end_date)
            if ti.map_index >= 0:
                metadata["Map index"] = ti.map_index
            for key in keys:
                materializations.append(
                    (plan.order.get(key, 0), AssetMaterialization(
                        asset_key=key,
                        description=f"Airflow task {run.dag_id}.{task_id} succeeded in run {run.run_id}",
                        metadata=metadata,
                    ))
                )
        finished = [t for t in task_tis if t.is_finished and t.state != "skipped"]
        if finished:
            failed = [t for t in finished if not t.is_success]
            for key in keys:
                checks.append(
                    AssetCheckEvaluation(
                        asset_key=key,
                        check_name=TASK_RUN_CHECK_NAME,
                        passed=not failed,
                        severity=AssetCheckSeverity.ERROR,
                        metadata={
                            "Airflow run": MetadataValue.url(run_url),
                            "Task state": ", ".join(sorted({str(t.state) for t in finished})),
                        },
                        description=(
                            f"Airflow task {run.dag_id}.{task_id} ended {failed[0].state} in run {run.run_id}: {run_url}"
                            if failed else None
                        ),
                    )
                )
    events: list[Any] = [m for _, m in sorted(materializations, key=lambda pair: pair[0])]
    materialized = {m.asset_key for m in events}
    dag_key = plan.dag_asset_keys[run.dag_id]
    run_metadata: dict[str, Any] = {"Airflow run": MetadataValue.url(run_url), "Airflow run id": run.run_id, "Run type": run.run_type or ""}
    if run.start_date:
        run_metadata["Start date"] = MetadataValue.timestamp(run.start_date)
    if run.end_date:
        run_metadata["End date"] = MetadataValue.timestamp(run.end_date)
    if run.is_success:
        events.append(AssetMaterialization(asset_key=dag_key, description=f"Airflow DAG run {run.run_id} succeeded", metadata=run_metadata))
        materialized.add(dag_key)
    checks.append(
        AssetCheckEvaluation(
            asset_key=dag_key,
            check_name=DAG_RUN_CHECK_NAME,
            passed=run.is_success,
            severity=AssetCheckSeverity.ERROR,
            metadata=run_metadata,
            description=None if run.is_success else f"Airflow DAG run {run.run_id} failed: {run_url}",
        )
    )
    return events + checks, materialized


@dataclass
class TickOutcome:
    """What one :func:`evaluate_tick` produced: the Dagster events, the new cursor, the asset keys
    materialized, and how many finished runs were processed or left for the next tick.

    >>> TickOutcome(events=[], cursor=AirliftSensorCursor(), materialized=set(), runs_processed=0, runs_pending=0).runs_pending
    0
    """

    events: list[Any]
    cursor: AirliftSensorCursor
    materialized: set[AssetKey]
    runs_processed: int
    runs_pending: int


def evaluate_tick(
    *,
    context: SensorEvaluationContext,
    airflow_instance: AirflowInstance,
    plan: SensorPlan,
    now: datetime | None = None,
    overlap: timedelta = timedelta(minutes=10),
    initial_lookback: timedelta = timedelta(days=1),
    time_budget: float = 40.0,
) -> TickOutcome:
    """One sensor evaluation; raises :class:`AirliftDagsterError` (cursor unchanged) if Airflow fails."""
    cursor = AirliftSensorCursor.parse(context.cursor)
    now = now or datetime.now(timezone.utc)
    deadline = time.monotonic() + time_budget
    start = (cursor.high_water - overlap) if cursor.high_water else now - initial_lookback
    links = ui_links_for(plan.api_state.api, plan.api_state.webserver_url)
    airflow_instance.assume_api_version(plan.api_state.api)
    try:
        runs = [
            r for r in airflow_instance.iter_dag_runs(states=["success", "failed"], end_date_gte=start, end_date_lte=now)
            if r.dag_id in plan.dag_ids and r.end_date is not None and _run_key(r) not in cursor.done
        ]
        running = [r for r in airflow_instance.iter_dag_runs(states=["running"]) if r.dag_id in plan.dag_ids]
    except AirliftClientError as e:
        raise AirliftDagsterError(
            f"Airlift sensor for Airflow instance {plan.instance_name!r}: {e}. The cursor did not move; the next tick catches up."
        ) from e
    runs.sort(key=lambda r: (r.end_date, r.dag_id, r.run_id))
    events: list[Any] = []
    materialized: set[AssetKey] = set()
    processed: list[DagRun] = []
    mapped_dags = {dag_id for dag_id, _ in plan.by_task}
    for offset in range(0, len(runs), RUN_BATCH):
        if processed and time.monotonic() > deadline:
            break
        batch = runs[offset: offset + RUN_BATCH]
        tis_by_run: dict[tuple[str, str], list[TaskInstance]] = defaultdict(list)
        needs_tis = [r for r in batch if r.dag_id in mapped_dags]
        if needs_tis:
            wanted = {(r.dag_id, r.run_id) for r in needs_tis}
            try:
                for ti in airflow_instance.iter_task_instances(
                    dag_ids=sorted({r.dag_id for r in needs_tis}), run_ids=sorted({r.run_id for r in needs_tis})
                ):
                    if (ti.dag_id, ti.run_id) in wanted:
                        tis_by_run[(ti.dag_id, ti.run_id)].append(ti)
            except AirliftClientError as e:
                if not processed:
                    raise AirliftDagsterError(
                        f"Airlift sensor for Airflow instance {plan.instance_name!r}: {e}. The cursor did not move; the next tick catches up."
                    ) from e
                break  # keep what is done; the rest comes next tick
        built = _dagster_built(context, needs_tis)
        for run in batch:
            run_events, run_materialized = _run_events(plan, links, run, _latest_tries(tis_by_run.get((run.dag_id, run.run_id), ())), built)
            events.extend(run_events)
            materialized |= run_materialized
            processed.append(run)
    running_keys = [f"{r.dag_id}\x1f{r.run_id}" for r in running]
    for run, key in zip(running, running_keys, strict=True):
        if key not in cursor.running:
            events.append(
                AssetObservation(
                    asset_key=plan.dag_asset_keys[run.dag_id],
                    description=f"Airflow DAG run {run.run_id} is running",
                    metadata={"Airflow run": MetadataValue.url(links.run_url(run.dag_id, run.run_id)), "Airflow run state": "running"},
                )
            )
    done = dict(cursor.done)
    high_water = cursor.high_water
    for run in processed:
        assert run.end_date is not None
        done[_run_key(run)] = _iso(run.end_date)
        high_water = max(high_water, run.end_date) if high_water else run.end_date
    if high_water is not None:
        floor = high_water - overlap
        done = {k: v for k, v in done.items() if datetime.fromisoformat(v) >= floor}
    new_cursor = AirliftSensorCursor(high_water=high_water, done=done, running=running_keys)
    return TickOutcome(events=events, cursor=new_cursor, materialized=materialized, runs_processed=len(processed),
                       runs_pending=len(runs) - len(processed))


def build_airflow_sensor(
    *,
    airflow_instance: AirflowInstance,
    plan: SensorPlan,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    time_budget: float = 40.0,
) -> SensorDefinition:
    """The polling sensor of one Airflow instance (name ``<instance>__airflow_sensor``)."""
    all_user_checks = sorted({k for keys in plan.user_check_keys.values() for k in keys}, key=str)

    @sensor(
        name=f"{plan.instance_name}__airflow_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Polls Airflow instance {plan.instance_name!r} for finished runs and turns them into Dagster events.",
        asset_selection=AssetSelection.checks(*all_user_checks) if all_user_checks else None,
    )
    def _airflow_sensor(context: SensorEvaluationContext) -> SensorResult:
        outcome = evaluate_tick(context=context, airflow_instance=airflow_instance, plan=plan, time_budget=time_budget)
        if outcome.runs_processed or outcome.runs_pending:
            context.log.info(
                f"processed {outcome.runs_processed} Airflow runs ({outcome.runs_pending} left for the next tick), "
                f"{len(outcome.events)} events"
            )
        check_keys = sorted({k for key in outcome.materialized for k in plan.user_check_keys.get(key, ())}, key=str)
        run_requests = [RunRequest(asset_selection=[], asset_check_keys=check_keys)] if check_keys else []
        return build_sensor_result(asset_events=outcome.events, cursor=outcome.cursor.serialize(), run_requests=run_requests)

    return _airflow_sensor

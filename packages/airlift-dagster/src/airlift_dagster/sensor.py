"""The sensor that turns Airflow history into Dagster events, exactly once.

The unit of truth is the task-instance TRY, ``(instance, dag_id, run_id, task_id, map_index,
try_number)``: one successful try gives one materialization per mapped asset; one DAG run becoming
successful, ``(instance, dag_id, run_id, end_date)``, gives one materialization of the DAG asset.
Every materialization carries its identity in its tags (:class:`airlift_protocol.tags.AirflowEventId`).

Airflow history is mutable (tasks are cleared and re-run, runs and tasks are marked, commits land
late), so a tick reads what CHANGED rather than what finished: rows whose ``updated_at`` moved. A tick
is five steps, each testable alone:

1. :func:`plan_tick` (pure): the ``updated_at`` window after the cursor's high-water mark, an older
   window to re-read once the lateness window has passed, DAGs new to the mapping to backfill;
2. :func:`fetch_changes` (Airflow I/O): the window is first sized (halved until it holds at most
   ``max_rows_per_tick`` rows), then read with strict paging: a failing or changing page fails the
   tick, the cursor does not move;
   :func:`fetch_dataset_events` reads the dataset / asset events of the same windows (only when
   datasets are mapped) and :func:`fetch_partition_runs` the runs naming the partitions of
   time-partitioned assets (only when some are mapped);
3. :func:`build_emissions` (pure): events in Airflow's execution order, run by run: task assets by the
   DAG's task dependencies and end dates, then the DAG asset; tries built by a Dagster run that the
   ``DagsterOperator`` launched (run tags, per Airflow run and try) are not materialized again;
   :func:`build_dataset_emissions` gives one materialization per dataset / asset event;
4. :func:`read_held_events` + :func:`drop_held` (one batched read of the Dagster event log): drop
   identities the Dagster instance already holds (Dagster stores a tick's events before it saves the
   cursor, so a crash in between re-sends them; a row can also change again without a new try);
5. :func:`advance_cursor` (pure): move the high-water mark over what was read and emitted.

The user's event transformer (:mod:`airlift_dagster.transform`), if any, then sees what is left.

Late commits: a window read by step 2 is remembered as (bounds, row count, digest) and read once more
when ``lateness_window`` has passed; if its rows differ, the difference is emitted (after step 4).
Then it is *settled*: the cursor keeps its row count, and each tick counts the settled windows at once
(:func:`audit_settled`); a window holding more rows than counted got a commit later than the lateness
window: it is re-read and its new rows are reported (marked ``Committed late``) with a warning, or, if it
is too large to re-read, warned about with the way to recover (:func:`late_warnings`).
The cursor stays a few kilobytes whatever the run rate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
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
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    EventRecordsFilter,
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
from airlift_dagster.run_mirror import mirror_airflow_runs
from airlift_dagster.ticks import build_sensor_result
from airlift_dagster.transform import AirflowTickView, EventTransformer, apply_event_transformer
from airlift_protocol import (
    AIRFLOW_RUN_ID_RUN_TAG,
    ApiVersion,
    DagRun,
    DatasetEvent,
    PartitionKeyError,
    TaskInstance,
    TimeWindowPartitioning,
    parse_dagster_run_tags,
    partition_key_for_airflow_run,
)
from airlift_protocol.events import (
    DAG_RUN_CHECK_NAME,
    TASK_RUN_CHECK_NAME,
    MetadataEntry,
    dag_run_success_event,
    task_check_metadata,
    task_success_event,
)
from airlift_protocol.tags import AirflowEventId, DatasetEventId, airflow_event_key_of

__all__ = [
    "CURSOR_VERSION",
    "DAG_RUN_CHECK_NAME",
    "PARTITION_CHECK_NAME",
    "TASK_RUN_CHECK_NAME",
    "AirliftSensorCursor",
    "Audit",
    "Emission",
    "SensorPlan",
    "SensorSettings",
    "SettledWindow",
    "SweepWindow",
    "TickOutcome",
    "TickPlan",
    "advance_cursor",
    "audit_settled",
    "build_airflow_sensor",
    "build_dataset_emissions",
    "build_emissions",
    "complete_runs",
    "drop_held",
    "evaluate_tick",
    "fetch_changes",
    "fetch_dataset_events",
    "fetch_partition_runs",
    "late_warnings",
    "plan_tick",
    "read_held_events",
    "settle_window",
]

log = logging.getLogger("airlift_dagster")

CURSOR_VERSION = 2
#: Check on time-partitioned mapped assets: the Airflow run names exactly one partition.
PARTITION_CHECK_NAME = "airflow_partition_key"
#: Windows remembered for the lateness re-read before neighbours are merged (keeps the cursor small).
MAX_SWEEP_WINDOWS = 32
#: Settled windows the late-commit audit keeps apart (older ones are merged: still counted, too large
#: to re-read in one tick once they exceed ``max_rows_per_tick``).
MAX_SETTLED_WINDOWS = 16
#: Late rows named in a warning (the rest are counted).
LATE_NAMED = 10
#: DAGs new to the mapping backfilled per tick.
BACKFILL_DAGS_PER_TICK = 20
#: Margin (seconds of Dagster's clock) when looking for events stored since the previous tick started.
STORE_MARGIN = 5.0
_TICK = timedelta(microseconds=1)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat()


def _us(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=timezone.utc)


def dag_digest(dag_id: str, mapped_task_ids: Iterable[str] = ()) -> str:
    """8 hex characters standing in the cursor for a DAG and the tasks mapped to assets in it (a
    DAG whose digest the cursor lacks joined the selector or the mapping: its history is backfilled)."""
    return hashlib.sha1("\x1f".join([dag_id, *sorted(mapped_task_ids)]).encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SensorSettings:
    """The sensor's knobs (see the guide for costs).

    - ``history_window``: how far back the first tick (and the first tick after a DAG joins the
      mapping) reports;
    - ``lateness_window``: how long after a row's ``updated_at`` a late commit is still caught (each
      changed row is read twice: once when it appears, once ``lateness_window`` later);
    - ``max_rows_per_tick``: runs + task instances read per tick (bounds tick time and memory);
    - ``settle``: rows changed in the last ``settle`` are left for the next tick (commits in flight);
    - ``mirror_runs``: also show each Airflow DAG run as a Dagster run (see :mod:`airlift_dagster.run_mirror`);
    - ``clock``: the current time (injectable for tests).

    >>> SensorSettings(lateness_window=timedelta(hours=12)).max_rows_per_tick
    5000
    """

    history_window: timedelta = timedelta(days=1)
    lateness_window: timedelta = timedelta(hours=6)
    max_rows_per_tick: int = 5000
    settle: timedelta = timedelta(seconds=10)
    mirror_runs: bool = False
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc), compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("history_window", "lateness_window", "settle"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise AirliftDagsterError(f"sensor setting {name} must be a timedelta of zero or more, got {value!r}")
        if not isinstance(self.max_rows_per_tick, int) or self.max_rows_per_tick < 10:
            raise AirliftDagsterError(f"sensor setting max_rows_per_tick must be an int of at least 10, got {self.max_rows_per_tick!r}")


# ------------------------------------------------------------------------------------------ cursor
@dataclass(frozen=True)
class SweepWindow:
    """An ``updated_at`` window already read, to read once more after the lateness window:
    its bounds, how many rows it held and an order-free digest of them."""

    lo: datetime
    hi: datetime
    rows: int
    digest: int

    def merged(self, other: SweepWindow) -> SweepWindow:
        return SweepWindow(lo=self.lo, hi=other.hi, rows=self.rows + other.rows, digest=self.digest ^ other.digest)


@dataclass(frozen=True)
class SettledWindow:
    """An ``updated_at`` window read twice (fresh, then after the lateness window) with the number
    of rows (runs + task instances of every DAG, any state) Airflow listed in it when last counted.
    Rows only leave a settled window (a changed row gets a new ``updated_at``); more rows than
    counted means a commit landed later than the lateness window."""

    lo: datetime
    hi: datetime
    rows: int


def rows_digest(runs: Iterable[DagRun], tis: Iterable[TaskInstance]) -> tuple[int, int]:
    """(count, digest) of the finished rows a window holds (running rows change all the time and are
    not events); the digest of two windows' union is the XOR of theirs."""
    count = 0
    digest = 0
    for run in runs:
        if not run.is_finished:
            continue
        count += 1
        digest ^= zlib.crc32(f"r\x1f{run.dag_id}\x1f{run.run_id}\x1f{run.state}\x1f{run.end_date}".encode())
    for ti in tis:
        if not ti.is_finished:
            continue
        count += 1
        digest ^= zlib.crc32(f"t\x1f{ti.dag_id}\x1f{ti.run_id}\x1f{ti.task_id}\x1f{ti.map_index}\x1f{ti.try_number}\x1f{ti.state}".encode())
    return count, digest


@dataclass
class AirliftSensorCursor:
    """The sensor's progress: a small versioned JSON record (kilobytes at any run rate).

    ``high_water``: every row changed up to here (Airflow's ``updated_at``) was processed;
    ``tick_started``: when the tick that wrote the cursor started (Dagster's clock);
    ``pending``: windows to read again after the lateness window; ``settled``: windows read twice,
    with how many rows Airflow listed in them (the late-commit audit); ``dags``: digests of the DAGs the
    sensor covers (a DAG new to the mapping gets its history backfilled; ``None``: take the current
    ones as covered, as after an upgrade from the end-date cursor of earlier releases).

    >>> AirliftSensorCursor.parse(AirliftSensorCursor().serialize()).high_water is None
    True
    """

    high_water: datetime | None = None
    tick_started: float = 0.0
    pending: list[SweepWindow] = field(default_factory=list)
    dags: frozenset[str] | None = frozenset()
    settled: list[SettledWindow] = field(default_factory=list)

    def serialize(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "hw": _iso(self.high_water) if self.high_water else None,
                "at": round(self.tick_started, 3),
                "sw": [[_us(w.lo), _us(w.hi), w.rows, w.digest] for w in self.pending],
                "dags": None if self.dags is None else "".join(sorted(self.dags)),
                "au": [[_us(w.lo), _us(w.hi), w.rows] for w in self.settled],
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, text: str | None) -> AirliftSensorCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            version = data.get("v")
            if version == 1:  # the end-date cursor of earlier releases: continue from its mark
                hw = data.get("hw")
                return cls(high_water=datetime.fromisoformat(hw) if hw else None, dags=None)
            if version != CURSOR_VERSION:
                raise ValueError(f"cursor format {version!r}")
            hw = data.get("hw")
            raw_dags = data.get("dags")
            dags = None if raw_dags is None else str(raw_dags)
            return cls(
                high_water=datetime.fromisoformat(hw) if hw else None,
                tick_started=float(data.get("at") or 0.0),
                pending=[SweepWindow(_from_us(lo), _from_us(hi), int(n), int(d)) for lo, hi, n, d in data.get("sw") or []],
                dags=None if dags is None else frozenset(dags[i: i + 8] for i in range(0, len(dags), 8)),
                settled=[SettledWindow(_from_us(lo), _from_us(hi), int(n)) for lo, hi, n in data.get("au") or []],
            )
        except (ValueError, TypeError, AttributeError) as e:
            raise AirliftDagsterError(
                f"the Airlift sensor cursor {text[:80]!r} cannot be read ({e}); reset the sensor's cursor in the UI"
            ) from e


# -------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class SensorPlan:
    """Everything a tick needs that is known when definitions are built (no I/O)."""

    instance_name: str
    api: ApiVersion
    webserver_url: str
    dag_ids: frozenset[str]
    by_task: Mapping[tuple[str, str], Sequence[AssetKey]]
    order: Mapping[AssetKey, int]
    task_rank: Mapping[tuple[str, str], int]
    dag_asset_keys: Mapping[str, AssetKey]
    user_check_keys: Mapping[AssetKey, Sequence[AssetCheckKey]]
    coverage: Mapping[str, str] = field(default_factory=dict)
    #: Airflow dataset / asset URI → its asset key (empty: dataset events are not read).
    dataset_keys: Mapping[str, AssetKey] = field(default_factory=dict)
    #: Mapped asset key → its time-window partitioning (its materializations carry a partition key).
    partitioning: Mapping[AssetKey, TimeWindowPartitioning] = field(default_factory=dict)
    #: DAG id → its mapped task ids (those of ``by_task``).
    tasks_by_dag: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        instance_name: str,
        api: ApiVersion,
        webserver_url: str,
        upstream: Mapping[str, Mapping[str, Sequence[str]]],
        by_task: Mapping[tuple[str, str], Sequence[AssetKey]],
        specs: Sequence[AssetSpec],
        dag_asset_keys: Mapping[str, AssetKey],
        user_check_keys: Mapping[AssetKey, Sequence[AssetCheckKey]],
        dataset_keys: Mapping[str, AssetKey] | None = None,
        partitioning: Mapping[AssetKey, TimeWindowPartitioning] | None = None,
    ) -> SensorPlan:
        """``upstream``: per DAG, each task's upstream task ids (Airflow's dependencies)."""
        rank: dict[tuple[str, str], int] = {}
        for dag_id, tasks in upstream.items():
            for position, task_id in enumerate(_topological(tasks)):
                rank[(dag_id, task_id)] = position
        mapped: dict[str, list[str]] = defaultdict(list)
        for dag_id, task_id in by_task:
            mapped[dag_id].append(task_id)
        return cls(
            tasks_by_dag={dag_id: tuple(task_ids) for dag_id, task_ids in mapped.items()},
            coverage={dag_id: dag_digest(dag_id, mapped.get(dag_id, ())) for dag_id in dag_asset_keys},
            instance_name=instance_name,
            api=api,
            webserver_url=webserver_url,
            dag_ids=frozenset(dag_asset_keys),
            by_task={k: tuple(v) for k, v in by_task.items()},
            order=_topological_order(specs),
            task_rank=rank,
            dag_asset_keys=dict(dag_asset_keys),
            user_check_keys={k: tuple(v) for k, v in user_check_keys.items()},
            dataset_keys=dict(dataset_keys or {}),
            partitioning=dict(partitioning or {}),
        )


def _topological(deps: Mapping[Any, Sequence[Any]]) -> list[Any]:
    order: list[Any] = []
    done: set[Any] = set()
    visiting: set[Any] = set()

    def visit(node: Any) -> None:
        if node in done or node in visiting:
            return
        visiting.add(node)
        for dep in sorted(deps.get(node, ()), key=str):
            visit(dep)
        visiting.discard(node)
        done.add(node)
        order.append(node)

    for node in sorted(deps, key=str):
        visit(node)
    return order


def _topological_order(specs: Sequence[AssetSpec]) -> dict[AssetKey, int]:
    deps = {spec.key: [d.asset_key for d in spec.deps] for spec in specs}
    return {key: i for i, key in enumerate(_topological(deps))}


@dataclass(frozen=True)
class TickPlan:
    """What one tick reads: ``fresh`` (``updated_at`` window after the high-water mark, its upper
    bound may shrink when sized), ``sweep`` (a window to read again), ``backfill`` (DAGs new to the
    mapping, with their history from ``backfill_since``)."""

    fresh: tuple[datetime, datetime] | None
    sweep: SweepWindow | None
    backfill: tuple[str, ...]
    backfill_since: datetime
    first_start: bool


def plan_tick(cursor: AirliftSensorCursor, *, now: datetime, coverage: Mapping[str, str], settings: SensorSettings) -> TickPlan:
    """Step 1 (pure): what to read this tick. ``coverage``: DAG id → :func:`dag_digest`.

    >>> now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> plan = plan_tick(AirliftSensorCursor(), now=now, coverage={"d": dag_digest("d")}, settings=SensorSettings())
    >>> plan.first_start, plan.fresh[0] == now - timedelta(days=1)
    (True, True)
    """
    first = cursor.high_water is None
    lo = now - settings.history_window if cursor.high_water is None else cursor.high_water + _TICK
    hi = now - settings.settle
    sweep = cursor.pending[0] if cursor.pending and cursor.pending[0].hi <= now - settings.lateness_window else None
    backfill: tuple[str, ...] = ()
    if not first and cursor.dags is not None:
        backfill = tuple(sorted(d for d, digest in coverage.items() if digest not in cursor.dags))[:BACKFILL_DAGS_PER_TICK]
    return TickPlan(fresh=(lo, hi) if hi >= lo else None, sweep=sweep, backfill=backfill,
                    backfill_since=now - settings.history_window, first_start=first)


# ------------------------------------------------------------------------------------------- fetch
@dataclass
class Fetched:
    """Rows read from Airflow for one tick."""

    fresh: tuple[datetime, datetime] | None = None
    fresh_runs: list[DagRun] = field(default_factory=list)
    fresh_tis: list[TaskInstance] = field(default_factory=list)
    sweep_runs: list[DagRun] = field(default_factory=list)
    sweep_tis: list[TaskInstance] = field(default_factory=list)
    backfill_runs: list[DagRun] = field(default_factory=list)
    backfill_tis: list[TaskInstance] = field(default_factory=list)
    #: rows of every DAG Airflow listed in the sweep window (the settled window's count)
    sweep_total: int | None = None


def size_window(airflow_instance: AirflowInstance, lo: datetime, hi: datetime, budget: int) -> datetime:
    """The largest ``hi' <= hi`` (halving) whose window ``[lo, hi']`` holds at most ``budget`` rows.
    Rows sharing one instant cannot be split: such a window is read whole."""
    while True:
        count = airflow_instance.count_updated(updated_at_gte=lo, updated_at_lte=hi)
        if count <= budget or hi - lo <= _TICK:
            return hi
        hi = lo + (hi - lo) / 2


def _changed_all(airflow_instance: AirflowInstance, lo: datetime, hi: datetime,
                 dag_ids: frozenset[str]) -> tuple[list[DagRun], list[TaskInstance], int]:
    """The rows of ``dag_ids`` changed in ``[lo, hi]``, and how many rows of every DAG were listed."""
    total = 0
    runs: list[DagRun] = []
    tis: list[TaskInstance] = []
    for run in airflow_instance.iter_updated_dag_runs(updated_at_gte=lo, updated_at_lte=hi):
        total += 1
        if run.dag_id in dag_ids:
            runs.append(run)
    for ti in airflow_instance.iter_updated_task_instances(updated_at_gte=lo, updated_at_lte=hi):
        total += 1
        if ti.dag_id in dag_ids:
            tis.append(ti)
    return runs, tis, total


def _changed(airflow_instance: AirflowInstance, lo: datetime, hi: datetime, dag_ids: frozenset[str]) -> tuple[list[DagRun], list[TaskInstance]]:
    runs, tis, _ = _changed_all(airflow_instance, lo, hi, dag_ids)
    return runs, tis


def fetch_changes(airflow_instance: AirflowInstance, plan: TickPlan, *, dag_ids: frozenset[str], settings: SensorSettings) -> Fetched:
    """Step 2 (I/O): read the planned windows; any client error propagates (nothing partial)."""
    out = Fetched()
    if plan.fresh is not None:
        lo, hi = plan.fresh
        hi = size_window(airflow_instance, lo, hi, settings.max_rows_per_tick)
        out.fresh = (lo, hi)
        out.fresh_runs, out.fresh_tis = _changed(airflow_instance, lo, hi, dag_ids)
    if plan.sweep is not None:
        out.sweep_runs, out.sweep_tis, out.sweep_total = _changed_all(airflow_instance, plan.sweep.lo, plan.sweep.hi, dag_ids)
    if plan.backfill:
        upper = out.fresh[0] - _TICK if out.fresh else None
        runs = list(airflow_instance.iter_dag_runs(dag_ids=list(plan.backfill), states=["success", "failed"],
                                                   end_date_gte=plan.backfill_since, end_date_lte=upper))
        out.backfill_runs = runs
        if runs:
            wanted = {(r.dag_id, r.run_id) for r in runs}
            out.backfill_tis = [
                t for t in airflow_instance.iter_task_instances(dag_ids=sorted({r.dag_id for r in runs}), run_ids=sorted({r.run_id for r in runs}))
                if (t.dag_id, t.run_id) in wanted
            ]
    return out


# ------------------------------------------------------------------------------------------- audit
@dataclass
class Audit:
    """What the late-commit audit found in the settled windows: their counts now (``settled``), the
    rows of the one window re-read because it grew (``window``, ``runs``, ``tis``), and windows that
    grew but hold more rows than one tick reads (``unread``: window and its count now)."""

    settled: list[SettledWindow] = field(default_factory=list)
    window: SettledWindow | None = None
    runs: list[DagRun] = field(default_factory=list)
    tis: list[TaskInstance] = field(default_factory=list)
    unread: list[tuple[SettledWindow, int]] = field(default_factory=list)


def audit_settled(airflow_instance: AirflowInstance, settled: Sequence[SettledWindow], *, dag_ids: frozenset[str],
                  budget: int) -> Audit:
    """Step 2b (I/O): count the rows in all settled windows at once (two one-item requests); only if
    that total moved, count each window, and re-read the first one that grew if it fits ``budget``.
    A grown window holds rows committed later than the lateness window."""
    audit = Audit(settled=list(settled))
    if not settled:
        return audit
    total = airflow_instance.count_updated(updated_at_gte=settled[0].lo, updated_at_lte=settled[-1].hi)
    if total == sum(w.rows for w in settled):
        return audit
    recounted: list[SettledWindow] = []
    for window in settled:
        now_rows = airflow_instance.count_updated(updated_at_gte=window.lo, updated_at_lte=window.hi)
        if now_rows > window.rows:
            if now_rows > budget:  # counted and warned about once
                audit.unread.append((window, now_rows))
            elif audit.window is None:
                audit.runs, audit.tis, now_rows = _changed_all(airflow_instance, window.lo, window.hi, dag_ids)
                audit.window = window
            else:  # one re-read per tick: the old count makes a later tick find this window again
                recounted.append(window)
                continue
        recounted.append(SettledWindow(window.lo, window.hi, now_rows))
    audit.settled = recounted
    return audit


def settle_window(settled: Sequence[SettledWindow], window: SettledWindow) -> list[SettledWindow]:
    """Step 5b (pure): add a window read twice to the audited ones; a window that does not follow
    the last one starts the list again; past :data:`MAX_SETTLED_WINDOWS` the two oldest merge.

    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> out = settle_window([SettledWindow(t, t + timedelta(minutes=1), 3)],
    ...                     SettledWindow(t + timedelta(minutes=1, microseconds=1), t + timedelta(minutes=2), 4))
    >>> [w.rows for w in out]
    [3, 4]
    """
    out = list(settled)
    if out and window.lo != out[-1].hi + _TICK:
        out = []
    out.append(window)
    while len(out) > MAX_SETTLED_WINDOWS:
        out[:2] = [SettledWindow(out[0].lo, out[1].hi, out[0].rows + out[1].rows)]
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
    return Emission(marked, emission.event_id, emission.held_since)


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


def fetch_dataset_events(
    airflow_instance: AirflowInstance, plan: SensorPlan, windows: Iterable[tuple[datetime, datetime]]
) -> list[DatasetEvent]:
    """Step 2b (I/O): the dataset / asset events of the mapped URIs with a timestamp in the given
    windows (the tick's ``updated_at`` windows: an event is written with its task's success)."""
    if not plan.dataset_keys:
        return []
    out: list[DatasetEvent] = []
    for lo, hi in windows:
        out.extend(e for e in airflow_instance.iter_dataset_events(timestamp_gte=lo, timestamp_lte=hi) if e.uri in plan.dataset_keys)
    return out


def complete_runs(
    airflow_instance: AirflowInstance, plan: SensorPlan, groups: Sequence[tuple[Sequence[DagRun], list[TaskInstance]]],
) -> frozenset[tuple[str, str, str, int]]:
    """Step 2d (I/O): a successful run's DAG asset comes after the events of its tasks. Airflow 3 can
    write a task's row again after its run ended (so the row falls in a later window), and the row
    budget can split a run from its tasks: the mapped tasks of a successful run that its group lacks
    are read now (one request for the tick) and added to that group (``groups``: runs, task rows).
    Returns the added rows' (dag, run, task, map index); a row already reported is dropped by the
    identity check, and the later copy of the row finds its event held."""
    wanted: dict[tuple[str, str], int] = {}
    for i, (runs, tis) in enumerate(groups):
        have = {(t.dag_id, t.run_id, t.task_id) for t in tis}
        for run in runs:
            if run.is_success and any((run.dag_id, run.run_id, t) not in have for t in plan.tasks_by_dag.get(run.dag_id, ())):
                wanted.setdefault((run.dag_id, run.run_id), i)
    if not wanted:
        return frozenset()
    dag_ids = sorted({d for d, _ in wanted})
    present = {(t.dag_id, t.run_id, t.task_id, t.map_index) for _, tis in groups for t in tis}
    added: set[tuple[str, str, str, int]] = set()
    for ti in airflow_instance.iter_task_instances(dag_ids=dag_ids, run_ids=sorted({r for _, r in wanted}),
                                                   task_ids=sorted({t for d in dag_ids for t in plan.tasks_by_dag[d]})):
        group = wanted.get((ti.dag_id, ti.run_id))
        key = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        if group is None or (ti.dag_id, ti.task_id) not in plan.by_task or key in present:
            continue
        groups[group][1].append(ti)
        present.add(key)
        added.add(key)
    return frozenset(added)


def fetch_partition_runs(
    airflow_instance: AirflowInstance, plan: SensorPlan, runs: Iterable[DagRun], tis: Iterable[TaskInstance]
) -> dict[tuple[str, str], DagRun]:
    """Step 2c (I/O): the DAG runs whose logical date / data interval name the partition of a
    successful try of a task mapped to a time-partitioned asset (runs already read are reused; the
    others are read concurrently: usually none, as a run changes when its last task ends)."""
    known = {(r.dag_id, r.run_id): r for r in runs}
    if not plan.partitioning:
        return known
    wanted = sorted({(t.dag_id, t.run_id) for t in tis if t.is_success
                     and any(k in plan.partitioning for k in plan.by_task.get((t.dag_id, t.task_id), ()))} - set(known))
    known.update(airflow_instance.get_dag_runs(wanted))
    return known


# ------------------------------------------------------------------------------------------- build
@dataclass(frozen=True)
class Emission:
    """One event to emit. ``event_id`` (with ``held_since``: from when on Dagster's clock an earlier
    copy could have been stored) lets step 4 drop what the instance already holds; a check
    evaluation shares the id of the materialization it goes with."""

    event: Any
    event_id: AirflowEventId | DatasetEventId | None = None
    held_since: float | None = None


@dataclass(frozen=True)
class BuiltTries:
    """Tries that a Dagster run launched by the ``DagsterOperator`` built (from the run tags):
    (dag, run, task, map index) → try numbers (``None``: a run tagged without a try number)."""

    tries: Mapping[tuple[str, str, str, int], frozenset[int | None]] = field(default_factory=dict)

    def built(self, ti: TaskInstance) -> bool:
        found = self.tries.get((ti.dag_id, ti.run_id, ti.task_id, ti.map_index))
        return bool(found) and (ti.try_number in found or None in found)  # type: ignore[operator]


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
    built: BuiltTries,
    recent_since: float,
    changed_after: datetime | None,
    skew: timedelta,
    with_checks: bool = True,
    partition_runs: Mapping[tuple[str, str], DagRun] | None = None,
    completing: frozenset[tuple[str, str, str, int]] = frozenset(),
) -> list[Emission]:
    """Step 3 (pure): the ordered events of the given rows.

    A row whose event (end) happened before ``changed_after`` changed after the fact (marked, noted,
    committed late or backfilled): an earlier copy may be anywhere since its end date minus ``skew``,
    so its ``held_since`` reaches back that far; other rows only since ``recent_since``. Task rows in
    ``completing`` (dag, run, task, map index) were read with their run (:func:`complete_runs`): an
    earlier copy may be anywhere since their end, but they are not marked.
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
            out.extend(_task_emissions(plan, links, run_url, ti, built=built, recent_since=recent_since,
                                       changed_after=changed_after, skew=skew, with_checks=with_checks,
                                       run=(partition_runs or run_rows).get(key),
                                       completing=(ti.dag_id, ti.run_id, ti.task_id, ti.map_index) in completing))
        run = run_rows.get(key)
        if run is not None:
            out.extend(_run_emissions(plan, links, run_url, run, recent_since=recent_since, changed_after=changed_after, skew=skew,
                                      with_checks=with_checks))
    return out


def _held_since(end: datetime | None, *, recent_since: float, changed_after: datetime | None, skew: timedelta) -> tuple[float, bool]:
    if end is not None and changed_after is not None and end < changed_after:
        return (end - skew).timestamp(), True
    return recent_since, False


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
    plan: SensorPlan, links: AirflowUiLinks, run_url: str, ti: TaskInstance, *, built: BuiltTries, recent_since: float,
    changed_after: datetime | None, skew: timedelta, with_checks: bool, run: DagRun | None = None, completing: bool = False,
) -> list[Emission]:
    keys = plan.by_task.get((ti.dag_id, ti.task_id))
    if not keys or not ti.is_finished or ti.state == "skipped":
        return []
    since, changed = _held_since(ti.end_date, recent_since=recent_since, changed_after=changed_after, skew=skew)
    if completing:  # read with its run, not because its row changed: maybe reported already, never "marked"
        if not ti.is_success:
            return []
        since, changed = min(since, _when(ti.end_date) - skew.total_seconds()), False
    reported = task_success_event(
        instance_name=plan.instance_name, links=links, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
        map_index=ti.map_index, try_number=ti.try_number, start_date=ti.start_date, end_date=ti.end_date, marked=changed,
    )
    event_id = reported.event_id
    out: list[Emission] = []
    if ti.is_success and not built.built(ti):
        metadata = dagster_metadata(reported.metadata)
        for key in sorted(keys, key=lambda k: plan.order.get(k, 0)):
            try:
                partition = partition_of(plan, key, run, ti)
            except PartitionKeyError as e:
                out.append(Emission(AssetCheckEvaluation(
                    asset_key=key, check_name=PARTITION_CHECK_NAME, passed=False, severity=AssetCheckSeverity.ERROR,
                    metadata={"Airflow run": MetadataValue.url(run_url), "Try number": ti.try_number},
                    description=f"Not materialized: {e}",
                )))
                continue
            out.append(Emission(AssetMaterialization(
                asset_key=key, description=reported.description, metadata=metadata, tags=reported.tags(), partition=partition,
            ), event_id, since))
            if partition is not None:
                out.append(Emission(AssetCheckEvaluation(
                    asset_key=key, check_name=PARTITION_CHECK_NAME, passed=True, partition=partition,
                    metadata={"Airflow run": MetadataValue.url(run_url), "Partition": partition},
                ), event_id, since))
    if with_checks and (not changed or out):
        failed = not ti.is_success
        out.extend(
            Emission(AssetCheckEvaluation(
                asset_key=key, check_name=TASK_RUN_CHECK_NAME, passed=not failed, severity=AssetCheckSeverity.ERROR,
                metadata=dagster_metadata(task_check_metadata(run_url=run_url, state=str(ti.state), try_number=ti.try_number)),
                description=f"Airflow task {ti.dag_id}.{ti.task_id} ended {ti.state} in run {ti.run_id}: {run_url}" if failed else None,
            ), event_id if not failed else None, since)
            for key in keys
        )
    return out


def build_dataset_emissions(
    plan: SensorPlan, links: AirflowUiLinks, events: Sequence[DatasetEvent], *, held_since: Callable[[DatasetEvent], float],
) -> list[Emission]:
    """Step 3b (pure): one materialization of the dataset's asset per Airflow dataset / asset event,
    oldest first; ``held_since`` (per event) bounds the read of what Dagster already holds."""
    word = "dataset" if plan.api is ApiVersion.V1 else "asset"
    out: list[Emission] = []
    seen: set[str] = set()
    for event in sorted(events, key=lambda e: (e.timestamp, e.uri)):
        key = plan.dataset_keys.get(event.uri)
        event_id = DatasetEventId(plan.instance_name, event.uri, _iso(event.timestamp), dag_id=event.source_dag_id or "",
                                  run_id=event.source_run_id or "", task_id=event.source_task_id or "", map_index=event.source_map_index)
        if key is None or event_id.key in seen:
            continue
        seen.add(event_id.key)
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
                                                 metadata=metadata, tags=event_id.tags()), event_id, held_since(event)))
    return out


def _run_emissions(
    plan: SensorPlan, links: AirflowUiLinks, run_url: str, run: DagRun, *, recent_since: float, changed_after: datetime | None, skew: timedelta, with_checks: bool,
) -> list[Emission]:
    dag_key = plan.dag_asset_keys[run.dag_id]
    if run.state == "running":
        if changed_after is not None and run.start_date is not None and run.start_date >= changed_after:
            return [Emission(AssetObservation(
                asset_key=dag_key, description=f"Airflow DAG run {run.run_id} is running",
                metadata={"Airflow run": MetadataValue.url(run_url), "Airflow run state": "running"},
            ))]
        return []
    if not run.is_finished or run.end_date is None:
        return []
    since, changed = _held_since(run.end_date, recent_since=recent_since, changed_after=changed_after, skew=skew)
    reported = dag_run_success_event(instance_name=plan.instance_name, links=links, dag_id=run.dag_id, run_id=run.run_id,
                                     run_type=run.run_type, start_date=run.start_date, end_date=run.end_date, marked=changed)
    event_id = reported.event_id
    metadata = dagster_metadata(reported.check_metadata)
    out: list[Emission] = []
    if run.is_success:
        out.append(Emission(AssetMaterialization(asset_key=dag_key, description=reported.description,
                                                 metadata=dagster_metadata(reported.metadata), tags=reported.tags()), event_id, since))
    if with_checks and (not changed or out):
        out.append(Emission(AssetCheckEvaluation(
            asset_key=dag_key, check_name=DAG_RUN_CHECK_NAME, passed=run.is_success, severity=AssetCheckSeverity.ERROR, metadata=metadata,
            description=None if run.is_success else f"Airflow DAG run {run.run_id} failed: {run_url}",
        ), event_id if run.is_success else None, since))
    return out


# ------------------------------------------------------------------------------------------- dedupe
def read_held_events(instance: DagsterInstance | None, instance_name: str, since: float, *, page: int = 1000) -> set[str]:
    """Step 4a (one batched read, paged by storage id): identity digests
    (:attr:`AirflowEventId.key`) of the materializations of this Airflow instance that Dagster
    stored since ``since`` (seconds, Dagster's clock)."""
    held: set[str] = set()
    if instance is None:
        return held
    after: int | None = None
    while True:
        records_filter = EventRecordsFilter(event_type=DagsterEventType.ASSET_MATERIALIZATION, after_timestamp=since,
                                            after_cursor=after)
        with warnings.catch_warnings():  # Dagster suggests its per-asset-key API; this reads all keys at once
            warnings.simplefilter("ignore")
            records = instance.get_event_records(records_filter, limit=page, ascending=True)
        for record in records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            key = airflow_event_key_of(materialization.tags, instance_name=instance_name, metadata=materialization.metadata)
            if key is not None:
                held.add(key)
        if len(records) < page:
            return held
        after = records[-1].storage_id


def drop_held(emissions: Sequence[Emission], held: set[str]) -> list[Emission]:
    """Step 4b (pure): the emissions whose identity the instance does not hold yet."""
    return [e for e in emissions if e.event_id is None or e.event_id.key not in held]


def dagster_built_tries(instance: DagsterInstance | None, instance_name: str, run_ids: Iterable[str]) -> BuiltTries:
    """Tries built by Dagster runs that carry the ``DagsterOperator``'s run tags for these Airflow
    runs (one read). A run tagged with another instance's name does not count; one tagged without
    an instance name (older operators) does."""
    wanted = sorted(set(run_ids))
    if instance is None or not wanted:
        return BuiltTries()
    tries: dict[tuple[str, str, str, int], set[int | None]] = defaultdict(set)
    for record in instance.get_run_records(filters=RunsFilter(tags={AIRFLOW_RUN_ID_RUN_TAG: wanted})):
        ref = parse_dagster_run_tags(record.dagster_run.tags)
        if ref is None or (ref.instance_name is not None and ref.instance_name != instance_name):
            continue
        tries[(ref.dag_id, ref.run_id, ref.task_id, ref.map_index)].add(ref.try_number)
    return BuiltTries({k: frozenset(v) for k, v in tries.items()})


# ------------------------------------------------------------------------------------------ advance
def advance_cursor(
    cursor: AirliftSensorCursor,
    plan: TickPlan,
    fetched: Fetched,
    *,
    coverage: Mapping[str, str],
    tick_started: float,
    settings: SensorSettings,
    audit: Audit | None = None,
) -> AirliftSensorCursor:
    """Step 5 (pure): the cursor after a tick whose events were all emitted (``audit``: the
    settled windows' counts the late-commit audit saw)."""
    pending = list(cursor.pending)
    if plan.sweep is not None and pending and pending[0] == plan.sweep:
        pending.pop(0)
    high_water = cursor.high_water
    if fetched.fresh is not None:
        lo, hi = fetched.fresh
        rows, digest = rows_digest(fetched.fresh_runs, fetched.fresh_tis)
        pending.append(SweepWindow(lo, hi, rows, digest))
        high_water = hi
    elif high_water is None and plan.fresh is None:
        high_water = plan.backfill_since
    while len(pending) > MAX_SWEEP_WINDOWS:
        merged = _merge_smallest(pending, settings.max_rows_per_tick)
        if len(merged) == len(pending):
            break
        pending = merged
    current = set(coverage.values())
    if plan.first_start or cursor.dags is None:
        dags = frozenset(current)
    else:
        dags = frozenset((cursor.dags & current) | {coverage[d] for d in plan.backfill})
    settled = list(audit.settled) if audit is not None else list(cursor.settled)
    if plan.sweep is not None and fetched.sweep_total is not None:
        settled = settle_window(settled, SettledWindow(plan.sweep.lo, plan.sweep.hi, fetched.sweep_total))
    return AirliftSensorCursor(high_water=high_water, tick_started=tick_started, pending=pending, dags=dags, settled=settled)


def _merge_smallest(pending: list[SweepWindow], budget: int) -> list[SweepWindow]:
    """Merge the adjacent pair with the fewest rows (it stays readable in one tick if it fits)."""
    best = min(range(len(pending) - 1), key=lambda i: pending[i].rows + pending[i + 1].rows)
    if pending[best].rows + pending[best + 1].rows > budget and len(pending) <= MAX_SWEEP_WINDOWS * 4:
        return pending
    return [*pending[:best], pending[best].merged(pending[best + 1]), *pending[best + 2:]]


# -------------------------------------------------------------------------------------------- tick
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


def build_airflow_sensor(
    *,
    airflow_instance: AirflowInstance,
    plan: SensorPlan,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    settings: SensorSettings | None = None,
    event_transformer: EventTransformer | None = None,
) -> SensorDefinition:
    """The polling sensor of one Airflow instance (name ``<instance>__airflow_sensor``).

    >>> sensor_def = build_airflow_sensor(airflow_instance=airflow_instance, plan=plan)  # doctest: +SKIP
    """
    all_user_checks = sorted({k for keys in plan.user_check_keys.values() for k in keys}, key=str)
    settings = settings or SensorSettings()
    links = ui_links_for(plan.api, plan.webserver_url)

    @sensor(
        name=f"{plan.instance_name}__airflow_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Polls Airflow instance {plan.instance_name!r} for changed runs and task instances and turns them into Dagster events.",
        asset_selection=AssetSelection.checks(*all_user_checks) if all_user_checks else None,
    )
    def _airflow_sensor(context: SensorEvaluationContext) -> SensorResult:
        outcome = evaluate_tick(context=context, airflow_instance=airflow_instance, plan=plan, settings=settings,
                                event_transformer=event_transformer)
        for warning in outcome.warnings:
            context.log.warning(warning)
        if settings.mirror_runs:
            outcome.events = mirror_airflow_runs(
                context.instance, instance_name=plan.instance_name, runs=outcome.runs, task_instances=outcome.task_instances,
                events=outcome.events, links=links,
                code_location_origin=context.code_location_origin, repository_name=context.repository_name,
            )
        if outcome.events or not outcome.caught_up:
            context.log.info(
                f"read {outcome.rows_read} changed Airflow rows, emitted {len(outcome.events)} events "
                f"({outcome.dropped_held} already in Dagster){'' if outcome.caught_up else '; more next tick'}"
            )
        check_keys = sorted({k for key in outcome.materialized for k in plan.user_check_keys.get(key, ())}, key=str)
        run_requests = [RunRequest(asset_selection=[], asset_check_keys=check_keys)] if check_keys else []
        return build_sensor_result(asset_events=outcome.events, cursor=outcome.cursor.serialize(), run_requests=run_requests,
                                   warnings=outcome.warnings)

    return _airflow_sensor

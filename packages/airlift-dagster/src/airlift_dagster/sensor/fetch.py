"""Step 2 (Airflow I/O): read the planned windows from a change source (sized to the row budget,
strictly paged; :mod:`airlift_dagster.sensor.sources`), audit the settled windows for late commits, read the tasks of completing runs, dataset events and the runs naming partitions.
Any client error propagates: nothing partial, the cursor does not move."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from airlift_client import (
    AirflowInstance,
    AirliftClientError,
    AuditLogUnavailableError,
    TooManyRows,
)
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.sensor._time import _TICK
from airlift_dagster.sensor.cursor import SettledWindow, SweepWindow
from airlift_dagster.sensor.settings import SensorPlan, SensorSettings
from airlift_dagster.sensor.sources import ChangeSource, WindowRows, earliest
from airlift_dagster.sensor.windows import TickPlan
from airlift_protocol import (
    DagRun,
    DatasetEvent,
    TaskInstance,
)


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
    #: DAGs whose whole history the backfill read (this tick and earlier ones)
    backfill_done: tuple[str, ...] = ()
    #: a DAG whose history was read in part: its id and the end date its runs were read up to
    backfill_partial: tuple[str, datetime] | None = None
    #: runs plus task instances the backfill read
    backfill_rows: int = 0
    #: the part of the sweep window read this tick (all of it unless it held more rows than the budget)
    sweep_read: tuple[datetime, datetime] | None = None
    #: the size of ``sweep_read`` as the source counts it (the settled window's count)
    sweep_total: int | None = None
    #: rows the sweep's reads returned
    sweep_listed: int = 0
    #: rows the fresh window's reads returned
    fresh_listed: int = 0
    #: the size of ``fresh`` as the source counts it
    fresh_total: int = 0
    #: what the fresh window's second read compares (:attr:`WindowRows.signature`)
    fresh_signature: tuple[int, int] = (0, 0)
    #: whether the swept window changed since its first read (its rows are then all read; else only
    #: what tells it: a light read, :meth:`ChangeSource.read`)
    sweep_changed: bool = False
    #: when the earliest run-event row the windows' reads listed was written (:attr:`WindowRows.run_event_at`)
    run_event_at: datetime | None = None

    @property
    def rows_listed(self) -> int:
        """Rows read this tick from the windows, and the backfill's (the row budget counts them)."""
        return self.sweep_listed + self.fresh_listed + self.backfill_rows


#: How full a window sized from a count is aimed to be (the rows are rarely spread evenly).
SIZE_FILL = 0.8
#: How many row budgets' worth of the last window's density a tick first asks for.
GUESS_REACH = 2.0
#: Reads (and counts) one window may take: cuts, and pieces that fill the budget left after a cut read few rows.
MAX_WINDOW_READS = 8


def read_window(source: ChangeSource, lo: datetime, hi: datetime, budget: int, *,
                first_hi: datetime | None = None, light: bool = False) -> tuple[datetime, WindowRows]:
    """Read a window ``[lo, hi']`` (``hi' <= hi``) whose size is at most ``budget``: its upper bound
    and rows. The first read stops at ``first_hi`` if that is earlier (from the density of the last
    window read: :data:`GUESS_REACH`). The first range found over the budget is cut to the share of
    its count that fits (:data:`SIZE_FILL` of it), so an evenly filled day of backlog is sized in a
    read or two rather than by halving it a dozen times (each read of an oversized range costs a
    count of it). Rows are rarely spread evenly (an idle hour, then a burst): while the pieces read
    hold less than half the budget, the tick reads on from where it stopped, halfway to the nearest
    end known to be over the budget (twice as far as it got, if none is), as one window, within
    :data:`MAX_WINDOW_READS` reads. The size comes with the lists' first pages (no count of its
    own). Rows sharing one instant cannot be split: such a window is read whole. ``light``: see
    :meth:`ChangeSource.read`."""
    end = hi
    if first_hi is not None and lo < first_hi < hi:
        hi = first_hi
    start = lo
    got: WindowRows | None = None
    over: datetime | None = None  # the nearest upper bound known to hold more than the room
    reads = 0
    while True:
        reads += 1
        room = budget - (got.listed if got is not None else 0)
        rows = source.read(start, hi, None if hi - start <= _TICK else room, light=light)
        if isinstance(rows, TooManyRows):
            if got is not None and reads >= MAX_WINDOW_READS:
                return start - _TICK, got  # the pieces read so far
            share = SIZE_FILL * room / max(rows.counted, room + 1) if over is None else 0.5
            over = hi
            hi = start + (hi - start) * share
            continue
        got = rows if got is None else got.then(rows)
        if hi >= end or got.listed * 2 >= budget or reads >= MAX_WINDOW_READS:
            return hi, got
        start = hi + _TICK  # few rows so far: read on
        hi = start + (over - start) / 2 if over is not None else min(end, start + (start - lo))


def fetch_changes(airflow_instance: AirflowInstance, plan: TickPlan, *, source: ChangeSource, settings: SensorSettings) -> Fetched:
    """Step 2 (I/O): read the planned windows from ``source`` within one row budget: the sweep (the
    older window's second read, :func:`read_sweep`) first, within half the budget when there is a fresh window
    (so a backlog moves on while older windows wait), then the fresh window with what is left, then more of
    the sweep with what the fresh window left (a window larger than that is read in parts over ticks), then
    the backfill. Any client error propagates (nothing partial)."""
    out = Fetched()
    room = settings.max_rows_per_tick
    if plan.sweep is not None:
        # light: what tells whether the window changed; all of its rows only if it did. With a fresh window to
        # read, the sweep first takes half the budget (a backlog's fresh windows move on while older windows
        # wait for their second read), and the rest of its window after the fresh window, with what is left
        first = room - room // 2 if plan.fresh is not None else room
        hi, rows, out.sweep_changed = read_sweep(source, plan.sweep.lo, plan.sweep.hi, first, first_read=plan.sweep)
        _add_sweep(out, rows, (plan.sweep.lo, hi))
        room -= rows.listed
    if plan.fresh is not None and room > 0:
        lo = plan.fresh[0]
        # twice what fits at the last window's density: too far costs a count of about two budgets
        # and a cut; too short a window would waste the tick
        guess = lo + timedelta(seconds=GUESS_REACH * room / plan.density) if plan.density else None
        hi, rows = read_window(source, lo, plan.fresh[1], room, first_hi=guess)
        out.fresh_runs, out.fresh_tis, out.fresh_listed, out.fresh_total = rows.runs, rows.tis, rows.listed, rows.size
        out.fresh_signature = rows.signature
        out.run_event_at = earliest(out.run_event_at, rows.run_event_at)
        out.fresh = (lo, hi)
        room -= rows.listed
    if plan.sweep is not None and out.sweep_read is not None and out.sweep_read[1] < plan.sweep.hi and room > 0:
        hi, rows, _ = read_sweep(source, out.sweep_read[1] + _TICK, plan.sweep.hi, room)  # cut: changed (its rows are unknown)
        _add_sweep(out, rows, (plan.sweep.lo, hi))
    if plan.backfill:
        read_backfill(airflow_instance, plan, out, upper=out.fresh[0] - _TICK if out.fresh else None,
                      room=settings.max_rows_per_tick - out.rows_listed)
    return out


def read_sweep(source: ChangeSource, lo: datetime, hi: datetime, room: int, *,
               first_read: SweepWindow | None = None) -> tuple[datetime, WindowRows, bool]:
    """A window's second read within ``room``: light (what tells whether it changed since ``first_read``, its first
    read; ``None``: unknown, so changed), then, if it changed, all of its rows: what the light read left unread, or, if
    that would not fit in ``room``, the window read again whole, sized to ``room``. Returns the upper bound read to,
    the rows, and whether the window changed."""
    end, rows = read_window(source, lo, hi, room, light=True)
    changed = first_read is None or end < hi or rows.signature != (first_read.rows, first_read.digest)
    if not changed:
        return end, rows, False
    if rows.listed + rows.named_unread <= room:
        return end, source.complete(rows), True
    end, rows = read_window(source, lo, hi, room)
    return end, rows, True


def _add_sweep(out: Fetched, rows: WindowRows, read: tuple[datetime, datetime]) -> None:
    """Add a part of the swept window to ``out`` (``read``: the part read so far, from the window's start)."""
    out.sweep_runs.extend(rows.runs)
    out.sweep_tis.extend(rows.tis)
    out.sweep_total = (out.sweep_total or 0) + rows.size
    out.sweep_listed += rows.listed
    out.run_event_at = earliest(out.run_event_at, rows.run_event_at)
    out.sweep_read = read


#: Runs whose task instances the backfill reads in its first request group (later groups are sized
#: from the task instances per run seen so far).
BACKFILL_FIRST_RUNS = 10


def read_backfill(airflow_instance: AirflowInstance, plan: TickPlan, out: Fetched, *, upper: datetime | None, room: int) -> None:
    """Step 2a (I/O): the finished runs of DAGs new to the mapping (from :meth:`TickPlan.backfill_start`
    up to ``upper``) and their task instances, oldest end date first, within ``room`` rows (runs plus
    task instances; at most one request group more). A DAG whose history holds more is read in part:
    ``out.backfill_partial`` says up to which end date (runs ending together are read together), and
    a later tick resumes there. Fills ``out``'s backfill fields."""
    done: list[str] = []
    for dag_id in plan.backfill:
        if out.backfill_rows >= room:
            break
        runs = sorted((r for r in airflow_instance.iter_dag_runs(dag_ids=[dag_id], states=["success", "failed"],
                                                                  end_date_gte=plan.backfill_start(dag_id), end_date_lte=upper)
                       if r.end_date is not None), key=lambda r: r.end_date)  # type: ignore[arg-type,return-value]
        i = 0
        per_run = 0.0
        dag_rows = 0
        while i < len(runs) and out.backfill_rows < room:
            size = BACKFILL_FIRST_RUNS if not per_run else max(1, int((room - out.backfill_rows) / per_run))
            j = min(len(runs), i + size)
            while j < len(runs) and runs[j].end_date == runs[j - 1].end_date:
                j += 1  # runs ending in the same instant are read together: the resume point cannot split them
            group = runs[i:j]
            tis = list(airflow_instance.iter_task_instances_of_runs((r.dag_id, r.run_id) for r in group))
            out.backfill_runs.extend(group)
            out.backfill_tis.extend(tis)
            out.backfill_rows += len(group) + len(tis)
            dag_rows += len(group) + len(tis)
            i = j
            per_run = dag_rows / i
        if i < len(runs):
            if i:
                out.backfill_partial = (dag_id, runs[i - 1].end_date)  # type: ignore[assignment]
            break
        done.append(dag_id)
    out.backfill_done = tuple(done)


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


def audit_settled(source: ChangeSource, settled: Sequence[SettledWindow], *, budget: int, room: int | None = None) -> Audit:
    """Step 2b (I/O): count the rows in all settled windows at once (one or two one-item requests);
    only if that total moved, count each window, and re-read the first one that grew if it fits
    ``budget`` and the ``room`` the tick has left (else a later tick re-reads it). A grown window
    holds rows committed later than the lateness window."""
    room = budget if room is None else room
    audit = Audit(settled=list(settled))
    if not settled:
        return audit
    total = source.count(settled[0].lo, settled[-1].hi)
    if total == sum(w.rows for w in settled):
        return audit
    recounted: list[SettledWindow] = []
    for window in settled:
        now_rows = source.count(window.lo, window.hi)
        if now_rows > window.rows:
            rows = source.read(window.lo, window.hi, budget) if now_rows <= budget and audit.window is None and now_rows <= room else None
            if isinstance(rows, WindowRows):
                audit.runs, audit.tis, now_rows = rows.runs, rows.tis, rows.size
                audit.window = window
            elif now_rows > budget or (audit.window is None and now_rows <= room):  # read: what it names is over the budget too
                audit.unread.append((window, now_rows))  # counted and warned about once
            else:  # one re-read per tick, within the room left: the old count makes a later tick find this window again
                recounted.append(window)
                continue
        recounted.append(SettledWindow(window.lo, window.hi, now_rows))
    audit.settled = recounted
    return audit


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
    are read now (by run: :meth:`AirflowInstance.iter_task_instances_of_runs`) and added to that group (``groups``: runs, task rows).
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
    for ti in airflow_instance.iter_task_instances_of_runs(sorted(wanted), task_ids=sorted({t for d in dag_ids for t in plan.tasks_by_dag[d]})):
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



@dataclass
class TickRead:
    """Everything a tick read from Airflow: the planned windows (``fetched``), the late-commit
    audit, whether the swept window changed since it was first read, the task rows each group emits
    (the rows read plus those read with their run), the tasks read with their run (``completing``),
    dataset events of the fresh and swept windows, and the runs naming partitions."""

    fetched: Fetched
    audit: Audit
    backfill_tis: list[TaskInstance]
    sweep_tis: list[TaskInstance]
    audit_tis: list[TaskInstance]
    fresh_tis: list[TaskInstance]
    completing: frozenset[tuple[str, str, str, int]]
    fresh_events: list[DatasetEvent]
    late_events: list[DatasetEvent]
    partition_runs: dict[tuple[str, str], DagRun]

    @property
    def swept_changed(self) -> bool:
        """Whether the swept window changed since its first read (:attr:`Fetched.sweep_changed`)."""
        return self.fetched.sweep_changed

    @property
    def runs(self) -> list[DagRun]:
        """The runs read this tick (those of the swept window if it changed)."""
        swept = self.fetched.sweep_runs if self.swept_changed else []
        return [*self.fetched.backfill_runs, *swept, *self.fetched.fresh_runs, *self.audit.runs]

    @property
    def task_instances(self) -> list[TaskInstance]:
        """The task instances read this tick (those of the swept window if it changed)."""
        return [*self.backfill_tis, *(self.sweep_tis if self.swept_changed else []), *self.fresh_tis, *self.audit_tis]


def read_airflow(airflow_instance: AirflowInstance, plan: SensorPlan, tick: TickPlan, settled: Sequence[SettledWindow], *,
                 settings: SensorSettings, source: ChangeSource) -> TickRead:
    """Step 2 (all of a tick's Airflow I/O): the planned windows from ``source``, the audit of ``settled`` windows,
    the tasks of completing runs, dataset events and partition runs. Raises
    :class:`AirliftDagsterError` (the cursor does not move) when Airflow fails, except
    :class:`AuditLogUnavailableError`, which the caller answers by choosing the other source."""
    airflow_instance.assume_api_version(plan.api)
    try:
        fetched = fetch_changes(airflow_instance, tick, source=source, settings=settings)
        audit = audit_settled(source, settled, budget=settings.max_rows_per_tick, room=settings.max_rows_per_tick - fetched.rows_listed)
        swept_changed = fetched.sweep_changed  # its rows go to the emissions only then
        backfill_tis, sweep_tis, audit_tis, fresh_tis = (list(fetched.backfill_tis), list(fetched.sweep_tis), list(audit.tis),
                                                         list(fetched.fresh_tis))
        completing = complete_runs(airflow_instance, plan, [(fetched.backfill_runs, backfill_tis),
                                                            (fetched.sweep_runs if swept_changed else [], sweep_tis),
                                                            (audit.runs, audit_tis), (fetched.fresh_runs, fresh_tis)])
        fresh_events = fetch_dataset_events(airflow_instance, plan, [fetched.fresh] if fetched.fresh else [])
        late_events = fetch_dataset_events(airflow_instance, plan, [(tick.sweep.lo, tick.sweep.hi)] if swept_changed and tick.sweep else [])
        all_runs = [*fetched.backfill_runs, *fetched.sweep_runs, *fetched.fresh_runs, *audit.runs]
        partition_runs = fetch_partition_runs(airflow_instance, plan, all_runs, [*backfill_tis, *sweep_tis, *fresh_tis, *audit_tis])
    except AuditLogUnavailableError:
        raise
    except AirliftClientError as e:
        raise AirliftDagsterError(
            f"Airlift sensor for Airflow instance {plan.instance_name!r}: {e}. The cursor did not move; the next tick catches up."
        ) from e
    return TickRead(fetched=fetched, audit=audit, backfill_tis=backfill_tis, sweep_tis=sweep_tis,
                    audit_tis=audit_tis, fresh_tis=fresh_tis, completing=completing, fresh_events=fresh_events,
                    late_events=late_events, partition_runs=partition_runs)

"""Step 2 (Airflow I/O): where a tick learns what changed in a time window.

Two sources answer the same question, "which runs and task instances changed in ``[lo, hi]``":

- :class:`AuditLogSource` (the default when Airflow serves it): the rows of Airflow's audit log
  (table ``log``, indexed on its time ``dttm``) written in the window name the tries that ended
  and the tasks marked or cleared; their task instances are then read by run (index
  ``task_instance (dag_id, run_id)``). No statement filters ``task_instance`` on a column Airflow
  does not index, so that table's size (the largest of the metadata database) does not weigh on a
  tick. Where airlift-airflow's run-event listener writes a row per DAG-run start and end
  (:mod:`airlift_protocol.run_events`; a window starting after the earliest such row), the runs are
  those the rows carry (no request), and those REST and UI actions name, read by key; elsewhere they are the scan's
  (``dag_run.updated_at``, a sequential scan of the runs table: Airflow's scheduler ends runs
  without an audit-log row). A window's second read (``light``) compares the try-end and run-event
  rows themselves, not their task instances and runs: such a row is written with the new state.
- :class:`ScanSource`: the runs and task instances whose ``updated_at`` is in the window (Airflow
  indexes neither column: a sequential scan of both tables per window). Used when the Airflow user
  may not read the audit log (Airflow 2: only the Admin role may) or Airflow is older than 2.9.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Protocol

from airlift_client import AirflowInstance, TooManyRows
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.sensor._time import _TICK
from airlift_protocol import RUN_RUNNING, DagRun, EventLog, TaskInstance, is_run_event, run_of_event

#: :attr:`ChangeSource.name` of each source (the cursor records which one sized its windows).
SCAN, AUDIT_LOG = "scan", "log"

#: Finished task-instance states the scheduler sets without an audit-log row (read with their run
#: once it ends; ``skipped`` is no event; a task succeeded without running is read with its run).
SCHEDULER_SET_STATES = ("upstream_failed",)

#: Audit-log events the audit-log source does not read (Airflow leaves them out: half the rows of a
#: busy window): a try's start (a running task instance is no event; its run's start is read with
#: the runs).
SKIPPED_EVENTS = ("running",)

#: Audit-log events a try writes when it ends, named after the state it reached, in the transaction
#: that writes that state (Airflow 2.10+ give the row's try number and map index). A row Airflow
#: lists has its change visible: a window's second read does not read these rows' task instances again.
TRY_END_EVENTS = frozenset({"success", "failed", "up_for_retry", "up_for_reschedule", "skipped"})

#: A task of a run: (dag_id, run_id, task_id).
TaskOfRun = tuple[str, str, str]

#: A run: (dag_id, run_id).
RunKey = tuple[str, str]

#: Runs a window read from run-event rows checks for a missing row (:class:`RunEventsMissing`), of the
#: runs its try-end rows name and no run-end or action row does (in an order that differs per window).
GAP_CHECK_RUNS = 2

#: How long before a window's end a run must have ended for its run-event row to be expected in the window.
GAP_CHECK_MARGIN = timedelta(seconds=5)


class RunEventsMissing(AirliftDagsterError):
    """A run ended in a window read from run-event rows, and the window holds no row for its end: the
    listener does not write them (airlift-airflow missing from a scheduler, or ``[airlift] run_events``
    off). ``run``: (dag_id, run_id); ``ended``: its end date."""

    def __init__(self, message: str, *, run: RunKey, ended: datetime) -> None:
        super().__init__(message)
        self.run = run
        self.ended = ended


def _digest(keys: Iterable[str]) -> tuple[int, int]:
    """(count, order-free digest) of ``keys``: the digest of two sets' union is the XOR of theirs."""
    count = digest = 0
    for key in keys:
        count += 1
        digest ^= zlib.crc32(key.encode())
    return count, digest


def _union(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """The (count, digest) of two disjoint sets' union."""
    return a[0] + b[0], a[1] ^ b[1]


def rows_digest(runs: Iterable[DagRun], tis: Iterable[TaskInstance]) -> tuple[int, int]:
    """(count, digest) of the finished rows a window holds (running rows change all the time and are
    not events); the digest of two windows' union is the XOR of theirs."""
    return _union(
        _digest(f"r\x1f{r.dag_id}\x1f{r.run_id}\x1f{r.state}\x1f{r.end_date}" for r in runs if r.is_finished),
        _digest(f"t\x1f{t.dag_id}\x1f{t.run_id}\x1f{t.task_id}\x1f{t.map_index}\x1f{t.try_number}\x1f{t.state}"
                for t in tis if t.is_finished),
    )


def _is_try_end(row: EventLog) -> bool:
    return row.event in TRY_END_EVENTS and row.task_id is not None and row.try_number is not None and row.map_index is not None


def _try_end_digest(rows: Iterable[EventLog]) -> tuple[int, int]:
    return _digest(f"l\x1f{r.event_log_id}\x1f{r.dag_id}\x1f{r.run_id}\x1f{r.task_id}\x1f{r.map_index}\x1f{r.try_number}\x1f{r.event}"
                   for r in rows)


@dataclass
class WindowRows:
    """What a source read for one window: the rows of the mapped DAGs (``runs``, ``tis``), the
    window's size as the source counts it (``size``: the same number :meth:`ChangeSource.count`
    gives, compared by the late-commit audit) and how many rows the reads returned (``listed``: the
    row budget counts them).

    ``marks``: the (count, digest) the window's second read compares (:attr:`signature`; ``None``:
    :func:`rows_digest` of the rows). ``unread``: task instances a light read left unread (those
    named by try-end rows, :data:`TRY_END_EVENTS`: task → map indexes); ``unread_runs``: runs a light
    read left unread (those of run-event rows that carry none); :meth:`ChangeSource.complete` reads them."""

    runs: list[DagRun]
    tis: list[TaskInstance]
    size: int
    listed: int
    marks: tuple[int, int] | None = None
    unread: Mapping[TaskOfRun, frozenset[int]] = field(default_factory=dict)
    unread_runs: frozenset[RunKey] = frozenset()
    #: when the earliest run-event row read was written (any DAG; ``None``: none read)
    run_event_at: datetime | None = None

    @property
    def named_unread(self) -> int:
        """The tasks and runs a light read left unread (what :meth:`ChangeSource.complete` asks for)."""
        return len(self.unread) + len(self.unread_runs)

    @property
    def signature(self) -> tuple[int, int]:
        """What a window's first and second reads compare: equal, nothing the window holds changed."""
        return self.marks if self.marks is not None else rows_digest(self.runs, self.tis)

    def then(self, later: WindowRows) -> WindowRows:
        """The rows of this window and of ``later``, the window that follows it."""
        unread = dict(self.unread)
        for task, indexes in later.unread.items():
            unread[task] = unread.get(task, frozenset()) | indexes
        return WindowRows([*self.runs, *later.runs], [*self.tis, *later.tis], self.size + later.size, self.listed + later.listed,
                          _union(self.signature, later.signature), unread, self.unread_runs | later.unread_runs,
                          earliest(self.run_event_at, later.run_event_at))


class ChangeSource(Protocol):
    """Reads the changes of a time window (see the module docstring)."""

    name: ClassVar[str]

    def read(self, lo: datetime, hi: datetime, max_rows: int | None, *, light: bool = False) -> WindowRows | TooManyRows:
        """The window's rows, or :class:`TooManyRows` when its size is over ``max_rows`` (only its
        first pages read). ``light``: what a second read needs to compare the window's
        :attr:`WindowRows.signature` (a source may leave rows unread: :attr:`WindowRows.unread`)."""

    def complete(self, rows: WindowRows) -> WindowRows:
        """``rows`` with what a light read left unread."""

    def count(self, lo: datetime, hi: datetime) -> int:
        """The window's size (what :attr:`WindowRows.size` says), one or two one-item requests."""


@dataclass
class ScanSource:
    """Rows whose ``updated_at`` is in the window: runs plus task instances of every DAG count."""

    airflow_instance: AirflowInstance
    dag_ids: frozenset[str]
    name: ClassVar[str] = SCAN

    def read(self, lo: datetime, hi: datetime, max_rows: int | None, *, light: bool = False) -> WindowRows | TooManyRows:
        """Reads every row, ``light`` or not (a task instance's change is known only from its row)."""
        rows = self.airflow_instance.read_updated(updated_at_gte=lo, updated_at_lte=hi, max_rows=max_rows)
        if isinstance(rows, TooManyRows):
            return rows
        runs, tis = rows
        listed = len(runs) + len(tis)
        return WindowRows([r for r in runs if r.dag_id in self.dag_ids], [t for t in tis if t.dag_id in self.dag_ids], listed, listed)

    def complete(self, rows: WindowRows) -> WindowRows:
        return rows

    def count(self, lo: datetime, hi: datetime) -> int:
        return self.airflow_instance.count_updated(updated_at_gte=lo, updated_at_lte=hi)


@dataclass
class AuditLogSource:
    """The task instances the audit-log rows written in the window name (their current state), read
    by run, and the window's runs: those the run-event rows carry (of a run's end; of its start too
    with ``read_started``: the run as Airflow showed it then, :func:`airlift_protocol.run_of_event`;
    read by key when a row carries none) and those the REST or UI actions name, read by key (a window
    starting after ``listening``, the earliest run-event row), else those whose
    ``updated_at`` is in the window (a scan of ``dag_run``, the smaller table). The size is the
    audit-log rows, plus the scanned runs of every DAG.

    A row naming a task (a try's ``success`` / ``failed`` / ``up_for_retry``, a REST or UI mark)
    selects that task's instances in the run (of its map index when the row has one); a row naming
    a run but no task (a clear on Airflow 3, a run marked by REST or the UI) selects all of the run's
    task instances. A try's row is written in the transaction that writes the task's state (a
    run-event row in the one that writes the run's), so a row Airflow lists has its change visible; a
    mark is logged just before it is applied, and the window's second read (after the lateness
    window) compares the states again. The scheduler writes no row when it sets a task
    ``upstream_failed`` (read with the ended runs of the window) or succeeds a task that does not
    run (``EmptyOperator``: read with its successful run, as any task a run's group lacks).

    Reading run-event rows, a window checks that they are written: of the runs its try-end rows name
    alone, :data:`GAP_CHECK_RUNS` are read, and one that ended in the window raises
    :class:`RunEventsMissing` (the caller reads runs by scan again)."""

    airflow_instance: AirflowInstance
    dag_ids: frozenset[str]
    listening: datetime | None = None
    #: whether the runs that run-event rows say started are read too (for the run mirror; else only ended ones)
    read_started: bool = False
    name: ClassVar[str] = AUDIT_LOG

    def reads_run_events(self, lo: datetime) -> bool:
        """Whether the window starting at ``lo`` takes its runs from run-event rows."""
        return self.listening is not None and lo > self.listening

    def read(self, lo: datetime, hi: datetime, max_rows: int | None, *, light: bool = False) -> WindowRows | TooManyRows:
        """``light``: the task instances named by try-end rows (:data:`TRY_END_EVENTS`) and the runs of
        run-event rows that carry none are left unread; the window's :attr:`WindowRows.signature` holds those
        rows instead of their task instances and runs (the same either way), so a second read that
        finds it unchanged reads the audit log (and the scanned runs) only."""
        events = self.reads_run_events(lo)
        all_runs: list[DagRun] = []
        if events:
            logged = self.airflow_instance.read_event_logs(after=lo - _TICK, before=hi + _TICK, max_rows=max_rows,
                                                           skip_events=SKIPPED_EVENTS)
            if isinstance(logged, TooManyRows):
                return logged
            rows = logged
        else:
            changed = self.airflow_instance.read_changes(after=lo - _TICK, before=hi + _TICK, updated_at_gte=lo,
                                                         updated_at_lte=hi, max_rows=max_rows, skip_events=SKIPPED_EVENTS)
            if isinstance(changed, TooManyRows):
                return changed
            rows, all_runs = changed
        whole: set[RunKey] = set()
        carried: dict[RunKey, DagRun] = {}  # the runs run-event rows carry (a run's latest row)
        uncarried: set[RunKey] = set()  # runs named by run-event rows that carry none this reader understands
        ended: set[RunKey] = set()  # runs whose end a run-event row names
        marked: dict[TaskOfRun, set[int] | None] = {}  # task -> map indexes named (None: all of them)
        tries: dict[TaskOfRun, set[int]] = {}
        try_rows: list[EventLog] = []
        heard = min((row.when for row in rows if is_run_event(row.event)), default=None)
        for row in rows:
            if row.dag_id not in self.dag_ids or not row.run_id:
                continue
            run = (row.dag_id, row.run_id)
            if is_run_event(row.event):
                if events:
                    try_rows.append(row)
                    if row.event != RUN_RUNNING:
                        ended.add(run)
                    if row.event != RUN_RUNNING or self.read_started:
                        in_row = run_of_event(row)
                        if in_row is None:
                            uncarried.add(run)
                        else:  # rows come in id order: a run's latest row wins
                            carried[run] = in_row
                            uncarried.discard(run)
            elif row.task_id is None:
                whole.add(run)
            elif _is_try_end(row):
                tries.setdefault((*run, row.task_id), set()).add(row.map_index)  # type: ignore[arg-type]
                try_rows.append(row)
            elif row.map_index is None:
                marked[(*run, row.task_id)] = None  # every map index (Airflow 2.9 and marks name none)
            else:
                indexes = marked.setdefault((*run, row.task_id), set())
                if indexes is not None:
                    indexes.add(row.map_index)
        size = len(rows) + len(all_runs)
        # what the read asks for: a light one leaves the tries' task instances and the uncarried runs unread
        named_tasks = len(marked) + len(whole) if light else len(marked.keys() | tries.keys()) + len(whole) + len(uncarried - whole)
        if max_rows is not None and size + named_tasks > max_rows:
            return TooManyRows(size + named_tasks)  # with the task instances and runs they name, over the budget
        read = 0
        runs = [r for r in all_runs if r.dag_id in self.dag_ids]
        if events:  # the runs run-event rows carry, and those UI or REST actions name read by key (and, not when
            # light, those of run-event rows that carry none)
            keyed = sorted(whole if light else whole | uncarried)
            by_key = list(self.airflow_instance.get_dag_runs(keyed).values()) if keyed else []
            read += len(by_key)
            runs = _distinct([*carried.values(), *by_key])
        tis: list[TaskInstance] = []
        to_read: dict[TaskOfRun, set[int] | None] = dict(marked)
        if not light:
            for task, indexes in tries.items():
                now = to_read.get(task, set())
                to_read[task] = None if now is None else now | indexes
        for ti in self._task_instances(to_read, whole):
            read += 1
            if _named(ti, to_read, whole):
                tis.append(ti)
        scheduler_set, more = self._scheduler_set(runs, tis)
        read += more
        # the signature (light or not): the runs (scanned, or named by a run), the task instances of marks, clears and
        # the scheduler, the try-end and run-event rows
        kept = [ti for ti in tis if _named(ti, marked, whole) or ti.key in scheduler_set]
        signed_runs = [r for r in runs if (r.dag_id, r.run_id) in whole] if events else runs
        unread = {task: frozenset(indexes) for task, indexes in tries.items()} if light else {}
        out = WindowRows(runs, tis, size, size + read, _union(rows_digest(signed_runs, kept), _try_end_digest(try_rows)), unread,
                         frozenset(uncarried - whole) if light else frozenset(), heard)
        if events and not light:
            known = {(r.dag_id, r.run_id): r for r in runs if r.is_finished}  # a run a row shows running may have ended since
            out.listed += self._check_run_events(lo, hi, tries, ended | whole, known)
        return out

    def _scheduler_set(self, runs: Sequence[DagRun], tis: list[TaskInstance]) -> tuple[set[tuple[str, str, str, int]], int]:
        """Add to ``tis`` the task instances the scheduler set in the ended ``runs`` (:data:`SCHEDULER_SET_STATES`);
        returns their keys and how many were read."""
        ended = sorted((r.dag_id, r.run_id) for r in runs if r.is_finished)
        found: set[tuple[str, str, str, int]] = set()
        if not ended:
            return found, 0
        have = {t.key for t in tis}
        read = 0
        for ti in self.airflow_instance.iter_task_instances_of_runs(ended, states=list(SCHEDULER_SET_STATES)):
            read += 1
            found.add(ti.key)
            if ti.key not in have:
                tis.append(ti)
        return found, read

    def _check_run_events(self, lo: datetime, hi: datetime, tries: Mapping[TaskOfRun, Set[int]], named: Set[RunKey],
                          known: Mapping[RunKey, DagRun]) -> int:
        """Check :data:`GAP_CHECK_RUNS` of the runs the window's try-end rows name and no run-end or
        action row does (``named``; those in ``known`` are not read again); raise
        :class:`RunEventsMissing` for one that ended in the window (its row would be in it). Returns
        how many runs were read."""
        # in an order of their own per window (a digest with the window's start), so that over windows every DAG is checked
        alone = sorted({(d, r) for d, r, _ in tries} - set(named), key=lambda k: (zlib.crc32(f"{k[0]}\x1f{k[1]}\x1f{lo}".encode()), k))
        alone = alone[:GAP_CHECK_RUNS]
        unread = [key for key in alone if key not in known]
        found = {**{key: known[key] for key in alone if key in known}, **(self.airflow_instance.get_dag_runs(unread) if unread else {})}
        for key, run in sorted(found.items()):
            if run.is_finished and run.end_date is not None and lo <= run.end_date <= hi - GAP_CHECK_MARGIN:
                raise RunEventsMissing(
                    f"run {key[1]!r} of DAG {key[0]!r} ended at {run.end_date.isoformat()} and Airflow's audit log has no "
                    f"run-event row for it: airlift-airflow's run-event listener is not writing them (installed in every "
                    f"scheduler? [airlift] run_events switched off?)", run=key, ended=run.end_date)
        return len(unread)

    def complete(self, rows: WindowRows) -> WindowRows:
        """Read the task instances named by try-end rows, and the runs of run-event rows that carry none,
        that a light read left unread."""
        if not rows.unread and not rows.unread_runs:
            return rows
        have = {t.key for t in rows.tis}
        tis = list(rows.tis)
        runs = list(rows.runs)
        read = 0
        for ti in self._task_instances(rows.unread, frozenset()):
            read += 1
            if _named(ti, rows.unread, frozenset()) and ti.key not in have:
                tis.append(ti)
                have.add(ti.key)
        known = {(r.dag_id, r.run_id) for r in runs}
        wanted = sorted(rows.unread_runs - known)
        if wanted:
            added = list(self.airflow_instance.get_dag_runs(wanted).values())
            read += len(added)
            runs.extend(added)
            _, more = self._scheduler_set(added, tis)
            read += more
        return WindowRows(runs, tis, rows.size, rows.listed + read, rows.marks, run_event_at=rows.run_event_at)

    def _task_instances(self, tasks: Mapping[TaskOfRun, Set[int] | None], whole: Set[RunKey]) -> Iterable[TaskInstance]:
        """The task instances of the runs in ``whole`` and of the runs of ``tasks`` (of those tasks only
        when no run is read whole): a superset of what :func:`_named` keeps."""
        runs = {*whole, *((d, r) for d, r, _ in tasks)}
        if not runs:
            return []
        return self.airflow_instance.iter_task_instances_of_runs(sorted(runs), task_ids=None if whole else sorted({t for _, _, t in tasks}))

    def count(self, lo: datetime, hi: datetime) -> int:
        logged = self.airflow_instance.count_event_logs(after=lo - _TICK, before=hi + _TICK, skip_events=SKIPPED_EVENTS)
        if self.reads_run_events(lo):
            return logged
        return logged + self.airflow_instance.count_updated(updated_at_gte=lo, updated_at_lte=hi, task_instances=False)


def _distinct(runs: Iterable[DagRun]) -> list[DagRun]:
    """``runs`` without repeats (the same run in the same state and end)."""
    seen: set[tuple[str, str, str | None, datetime | None]] = set()
    out = []
    for run in runs:
        key = (run.dag_id, run.run_id, run.state, run.end_date)
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two optional times (``None``: unknown)."""
    return b if a is None else a if b is None else min(a, b)


def _named(ti: TaskInstance, tasks: Mapping[TaskOfRun, Set[int] | None], whole: Set[tuple[str, str]]) -> bool:
    if (ti.dag_id, ti.run_id) in whole:
        return True
    task = (ti.dag_id, ti.run_id, ti.task_id)
    if task not in tasks:
        return False
    indexes = tasks[task]
    return indexes is None or ti.map_index in indexes


__all__ = ["AUDIT_LOG", "SCAN", "SCHEDULER_SET_STATES", "TRY_END_EVENTS", "AuditLogSource", "ChangeSource", "RunEventsMissing",
           "ScanSource", "WindowRows", "rows_digest"]

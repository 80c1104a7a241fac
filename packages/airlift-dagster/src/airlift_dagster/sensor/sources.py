"""Step 2 (Airflow I/O): where a tick learns what changed in a time window.

Two sources answer the same question, "which runs and task instances changed in ``[lo, hi]``":

- :class:`AuditLogSource` (the default when Airflow serves it): the rows of Airflow's audit log
  (table ``log``, indexed on its time ``dttm``) written in the window name the tries that ended
  and the tasks marked or cleared; their task instances are then read by run (index
  ``task_instance (dag_id, run_id)``). No statement filters ``task_instance`` on a column Airflow
  does not index, so that table's size (the largest of the metadata database) does not weigh on a
  tick. The runs are the scan's (``dag_run.updated_at``, a sequential scan of the runs table: the
  scheduler ends runs without an audit-log row). A window's second read (``light``) compares the
  try-end rows themselves, not their task instances: such a row is written with its task's state.
- :class:`ScanSource`: the runs and task instances whose ``updated_at`` is in the window (Airflow
  indexes neither column: a sequential scan of both tables per window). Used when the Airflow user
  may not read the audit log (Airflow 2: only the Admin role may) or Airflow is older than 2.9.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from airlift_client import AirflowInstance, TooManyRows
from airlift_dagster.sensor._time import _TICK
from airlift_protocol import DagRun, EventLog, TaskInstance

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
    named by try-end rows, :data:`TRY_END_EVENTS`: task → map indexes); :meth:`ChangeSource.complete`
    reads them."""

    runs: list[DagRun]
    tis: list[TaskInstance]
    size: int
    listed: int
    marks: tuple[int, int] | None = None
    unread: Mapping[TaskOfRun, frozenset[int]] = field(default_factory=dict)

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
                          _union(self.signature, later.signature), unread)


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
    """The runs whose ``updated_at`` is in the window (a scan of ``dag_run`` only, the smaller
    table), and the task instances the audit-log rows written in the window name (their current
    state), read by run; the size is the runs of every DAG plus the audit-log rows.

    A row naming a task (a try's ``success`` / ``failed`` / ``up_for_retry``, a REST or UI mark)
    selects that task's instances in the run (of its map index when the row has one); a row naming
    a run but no task (a clear on Airflow 3) selects all of the run's task instances. A try's row is
    written in the transaction that writes the task's state, so a row Airflow lists has its change
    visible; a mark is logged just before it is applied, and the window's second read (after the
    lateness window) compares the states again. The scheduler writes no row when it sets a task
    ``upstream_failed`` (read with the ended runs of the window) or succeeds a task that does not
    run (``EmptyOperator``: read with its successful run, as any task a run's group lacks)."""

    airflow_instance: AirflowInstance
    dag_ids: frozenset[str]
    name: ClassVar[str] = AUDIT_LOG

    def read(self, lo: datetime, hi: datetime, max_rows: int | None, *, light: bool = False) -> WindowRows | TooManyRows:
        """``light``: the task instances named by try-end rows (:data:`TRY_END_EVENTS`) are left
        unread; the window's :attr:`WindowRows.signature` holds those rows instead of their task
        instances (the same either way), so a second read that finds it unchanged reads the
        audit log and the runs only."""
        changed = self.airflow_instance.read_changes(after=lo - _TICK, before=hi + _TICK, updated_at_gte=lo, updated_at_lte=hi,
                                                     max_rows=max_rows, skip_events=SKIPPED_EVENTS)
        if isinstance(changed, TooManyRows):
            return changed
        rows, all_runs = changed
        runs = [r for r in all_runs if r.dag_id in self.dag_ids]
        whole: set[tuple[str, str]] = set()
        marked: dict[TaskOfRun, set[int] | None] = {}  # task -> map indexes named (None: all of them)
        tries: dict[TaskOfRun, set[int]] = {}
        try_rows: list[EventLog] = []
        for row in rows:
            if row.dag_id not in self.dag_ids or not row.run_id:
                continue
            run = (row.dag_id, row.run_id)
            if row.task_id is None:
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
        named_tasks = len(marked.keys() | tries.keys()) + len(whole)
        if max_rows is not None and size + named_tasks > max_rows:
            return TooManyRows(size + named_tasks)  # with the task instances they name, over the budget
        tis: list[TaskInstance] = []
        read = 0
        to_read: dict[TaskOfRun, set[int] | None] = dict(marked)
        if not light:
            for task, indexes in tries.items():
                now = to_read.get(task, set())
                to_read[task] = None if now is None else now | indexes
        for ti in self._task_instances(to_read, whole):
            read += 1
            if _named(ti, to_read, whole):
                tis.append(ti)
        ended = sorted((r.dag_id, r.run_id) for r in runs if r.is_finished)
        scheduler_set: set[tuple[str, str, str, int]] = set()
        if ended:
            have = {t.key for t in tis}
            for ti in self.airflow_instance.iter_task_instances_of_runs(ended, states=list(SCHEDULER_SET_STATES)):
                read += 1
                scheduler_set.add(ti.key)
                if ti.key not in have:
                    tis.append(ti)
        # the signature (light or not): the runs, the task instances of marks, clears and the scheduler, the try-end rows
        kept = [ti for ti in tis if _named(ti, marked, whole) or ti.key in scheduler_set]
        unread = {task: frozenset(indexes) for task, indexes in tries.items()} if light else {}
        return WindowRows(runs, tis, size, size + read, _union(rows_digest(runs, kept), _try_end_digest(try_rows)), unread)

    def complete(self, rows: WindowRows) -> WindowRows:
        """Read the task instances named by try-end rows that a light read left unread."""
        if not rows.unread:
            return rows
        have = {t.key for t in rows.tis}
        tis = list(rows.tis)
        read = 0
        for ti in self._task_instances(rows.unread, frozenset()):
            read += 1
            if _named(ti, rows.unread, frozenset()) and ti.key not in have:
                tis.append(ti)
        return WindowRows(rows.runs, tis, rows.size, rows.listed + read, rows.marks)

    def _task_instances(self, tasks: Mapping[TaskOfRun, Set[int] | None], whole: Set[tuple[str, str]]) -> Iterable[TaskInstance]:
        """The task instances of the runs in ``whole`` and of the runs of ``tasks`` (of those tasks only
        when no run is read whole): a superset of what :func:`_named` keeps."""
        runs = {*whole, *((d, r) for d, r, _ in tasks)}
        if not runs:
            return []
        return self.airflow_instance.iter_task_instances_of_runs(sorted(runs), task_ids=None if whole else sorted({t for _, _, t in tasks}))

    def count(self, lo: datetime, hi: datetime) -> int:
        return (self.airflow_instance.count_event_logs(after=lo - _TICK, before=hi + _TICK, skip_events=SKIPPED_EVENTS)
                + self.airflow_instance.count_updated(updated_at_gte=lo, updated_at_lte=hi, task_instances=False))


def _named(ti: TaskInstance, tasks: Mapping[TaskOfRun, Set[int] | None], whole: Set[tuple[str, str]]) -> bool:
    if (ti.dag_id, ti.run_id) in whole:
        return True
    task = (ti.dag_id, ti.run_id, ti.task_id)
    if task not in tasks:
        return False
    indexes = tasks[task]
    return indexes is None or ti.map_index in indexes


__all__ = ["AUDIT_LOG", "SCAN", "SCHEDULER_SET_STATES", "TRY_END_EVENTS", "AuditLogSource", "ChangeSource", "ScanSource",
           "WindowRows", "rows_digest"]

"""Step 2 (Airflow I/O): where a tick learns what changed in a time window.

Two sources answer the same question, "which runs and task instances changed in ``[lo, hi]``":

- :class:`AuditLogSource` (the default when Airflow serves it): the rows of Airflow's audit log
  (table ``log``, indexed on its time ``dttm``) written in the window name the tries that started
  or ended and the tasks marked or cleared; their task instances are then read by run (index
  ``task_instance (dag_id, run_id)``). No statement filters ``task_instance`` or ``dag_run`` on a
  column Airflow does not index, so a tick's database work follows what changed, not the size of
  the metadata database. Runs are followed apart (:func:`track_runs`): the running ones (a partial
  index) and those that left that set since the last tick (read by id).
- :class:`ScanSource`: the runs and task instances whose ``updated_at`` is in the window (Airflow
  indexes neither column: a sequential scan of both tables per window). Used when the Airflow user
  may not read the audit log (Airflow 2: only the Admin role may) or Airflow is older than 2.9.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from airlift_client import AirflowInstance
from airlift_dagster.sensor._time import _TICK
from airlift_protocol import DagRun, TaskInstance

#: :attr:`ChangeSource.name` of each source (the cursor records which one sized its windows).
SCAN, AUDIT_LOG = "scan", "log"

#: Finished task-instance states the scheduler sets without an audit-log row (read with their run
#: once it ends; ``skipped`` is no event).
SCHEDULER_SET_STATES = ("upstream_failed",)

#: Audit-log events that name nothing the audit-log source reads: a try's start (a running task
#: instance is no event; its run is followed by :func:`track_runs`). They are still listed (and
#: counted): a filter on the event makes Airflow's database read every row of the window's table
#: pages to count them, where a window on time alone is counted from ``idx_log_dttm``.
SKIPPED_EVENTS = frozenset({"running"})


@dataclass
class WindowRows:
    """What a source read for one window: the rows of the mapped DAGs (``runs``, ``tis``), the
    window's size as the source counts it (``size``: the same number :meth:`ChangeSource.count`
    gives, compared by the late-commit audit) and how many rows the reads returned (``listed``: the
    row budget counts them)."""

    runs: list[DagRun]
    tis: list[TaskInstance]
    size: int
    listed: int
    #: runs of the mapped DAGs the window's audit-log rows name (audit-log source)
    named: frozenset[tuple[str, str]] = frozenset()


class ChangeSource(Protocol):
    """Reads the changes of a time window (see the module docstring)."""

    name: ClassVar[str]

    def read(self, lo: datetime, hi: datetime, max_rows: int | None) -> WindowRows | None:
        """The window's rows, or ``None`` when its size is over ``max_rows`` (only its first pages read)."""

    def count(self, lo: datetime, hi: datetime) -> int:
        """The window's size (what :attr:`WindowRows.size` says), one or two one-item requests."""

    def runs_named(self, named: frozenset[tuple[str, str]]) -> list[DagRun]:
        """The finished runs among ``named`` (:attr:`WindowRows.named`), for a window read again
        that changed (a late commit): the runs the scan lists with their rows."""


@dataclass
class ScanSource:
    """Rows whose ``updated_at`` is in the window: runs plus task instances of every DAG count."""

    airflow_instance: AirflowInstance
    dag_ids: frozenset[str]
    name: ClassVar[str] = SCAN

    def read(self, lo: datetime, hi: datetime, max_rows: int | None) -> WindowRows | None:
        rows = self.airflow_instance.read_updated(updated_at_gte=lo, updated_at_lte=hi, max_rows=max_rows)
        if rows is None:
            return None
        runs, tis = rows
        listed = len(runs) + len(tis)
        return WindowRows([r for r in runs if r.dag_id in self.dag_ids], [t for t in tis if t.dag_id in self.dag_ids], listed, listed)

    def count(self, lo: datetime, hi: datetime) -> int:
        return self.airflow_instance.count_updated(updated_at_gte=lo, updated_at_lte=hi)

    def runs_named(self, named: frozenset[tuple[str, str]]) -> list[DagRun]:
        return []  # the scan's windows hold their runs


@dataclass
class AuditLogSource:
    """Task instances named by the audit-log rows written in the window (their current state); the
    size is the number of audit-log rows (of every DAG). Runs come from :func:`track_runs`. A window
    is over ``max_rows`` when its rows, the task instances they name and their runs (which
    :func:`track_runs` may read one by one) are.

    A row naming a task (a try's ``success`` / ``failed`` / ``up_for_retry`` / ``skipped``, a REST
    or UI mark) selects that task's instances in the run (of its map index when the row has one);
    a row naming a run but no task (a clear on Airflow 3) selects all of the run's task instances.
    A try's row is written in the transaction that writes the task's state, so a row Airflow lists
    has its change visible; a mark is logged just before it is applied, and the window's second
    read (after the lateness window) compares the states again."""

    airflow_instance: AirflowInstance
    dag_ids: frozenset[str]
    name: ClassVar[str] = AUDIT_LOG

    def read(self, lo: datetime, hi: datetime, max_rows: int | None) -> WindowRows | None:
        rows = self.airflow_instance.read_event_logs(after=lo - _TICK, before=hi + _TICK, max_rows=max_rows)
        if rows is None:
            return None
        whole: set[tuple[str, str]] = set()
        tasks: dict[tuple[str, str, str], set[int] | None] = {}
        for row in rows:
            if row.dag_id not in self.dag_ids or not row.run_id or row.event in SKIPPED_EVENTS:
                continue
            run = (row.dag_id, row.run_id)
            if row.task_id is None:
                whole.add(run)
            elif row.map_index is None:
                tasks[(*run, row.task_id)] = None  # every map index (Airflow 2.9 and marks name none)
            else:
                indexes = tasks.setdefault((*run, row.task_id), set())
                if indexes is not None:
                    indexes.add(row.map_index)
        runs = {*whole, *((d, r) for d, r, _ in tasks)}
        if max_rows is not None and len(rows) + len(tasks) + len(whole) + len(runs) > max_rows:
            return None  # with the task instances they name and their runs (read by id), over the budget
        tis: list[TaskInstance] = []
        read = 0
        for ti in self._task_instances(runs, whole, {t for _, _, t in tasks}):
            read += 1
            if (ti.dag_id, ti.run_id) in whole:
                tis.append(ti)
                continue
            indexes = tasks.get((ti.dag_id, ti.run_id, ti.task_id), set())
            if indexes is None or ti.map_index in indexes:
                tis.append(ti)
        return WindowRows([], tis, len(rows), len(rows) + read, frozenset(runs))

    def _task_instances(self, runs: set[tuple[str, str]], whole: set[tuple[str, str]], task_ids: set[str]) -> Iterable[TaskInstance]:
        if not runs:
            return []
        if whole:
            return self.airflow_instance.iter_task_instances_of_runs(sorted(runs))
        return self.airflow_instance.iter_task_instances_of_runs(sorted(runs), task_ids=sorted(task_ids))

    def count(self, lo: datetime, hi: datetime) -> int:
        return self.airflow_instance.count_event_logs(after=lo - _TICK, before=hi + _TICK)

    def runs_named(self, named: frozenset[tuple[str, str]]) -> list[DagRun]:
        found = self.airflow_instance.get_dag_runs(sorted(named), missing_ok=True)
        return [r for r in found.values() if r.is_finished]


@dataclass
class TrackedRuns:
    """What :func:`track_runs` found: runs to report this tick (finished since they were last
    seen, or running and not seen before) and the runs to follow on the next tick."""

    runs: list[DagRun] = field(default_factory=list)
    watched: frozenset[tuple[str, str]] = frozenset()
    #: task instances of the finished runs in states only the scheduler sets (no audit-log row names them)
    tis: list[TaskInstance] = field(default_factory=list)
    #: requests' worth of runs read by id this tick
    read_by_id: int = 0


def track_runs(airflow_instance: AirflowInstance, *, dag_ids: frozenset[str], watched: frozenset[tuple[str, str]],
               named: Iterable[tuple[str, str]], ended_since: datetime | None = None) -> TrackedRuns:
    """Step 2a (I/O, audit-log source): the runs of the mapped DAGs that changed since the last
    tick. The running runs are listed (Airflow's partial index on running runs serves it); the runs
    followed until now (``watched``) and the runs the audit log named, if no longer running, are
    read by id: a finished one is reported, a queued one is followed on. A run's end is written by
    the scheduler without an audit-log row, so it is found this way: the run was running when last
    seen, or one of its tries named it. A run deleted from Airflow is dropped. The task instances of
    the ended runs in states only the scheduler sets (:data:`SCHEDULER_SET_STATES`) are read with
    them (one request per group of runs). ``ended_since``
    (when this source takes over from the scan, which saw the runs' changes only up to its last
    window): the runs that ended from then on are read too (once; a filter Airflow does not index)."""
    running = {(r.dag_id, r.run_id): r for r in airflow_instance.iter_dag_runs(states=["running"]) if r.dag_id in dag_ids}
    wanted = sorted((set(watched) | {k for k in named if k[0] in dag_ids}) - set(running))
    found: dict[tuple[str, str], DagRun] = {}
    if wanted:
        found = airflow_instance.get_dag_runs(wanted, missing_ok=True)
    if ended_since is not None:
        for run in airflow_instance.iter_dag_runs(states=["success", "failed"], end_date_gte=ended_since):
            if run.dag_id in dag_ids:
                found.setdefault((run.dag_id, run.run_id), run)
    out = TrackedRuns(read_by_id=len(wanted))
    ended = [r for r in found.values() if r.is_finished]
    out.runs = [r for k, r in running.items() if k not in watched] + ended
    out.watched = frozenset(running) | frozenset(k for k, r in found.items() if not r.is_finished)
    if ended:
        out.tis = list(airflow_instance.iter_task_instances_of_runs(sorted((r.dag_id, r.run_id) for r in ended),
                                                                    states=list(SCHEDULER_SET_STATES)))
    return out


__all__ = ["AUDIT_LOG", "SCAN", "AuditLogSource", "ChangeSource", "ScanSource", "TrackedRuns", "WindowRows",
           "track_runs"]

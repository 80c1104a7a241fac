"""Step 2 (Airflow I/O): where a tick learns what changed in a time window.

Two sources answer the same question, "which runs and task instances changed in ``[lo, hi]``":

- :class:`AuditLogSource` (the default when Airflow serves it): the rows of Airflow's audit log
  (table ``log``, indexed on its time ``dttm``) written in the window name the tries that ended
  and the tasks marked or cleared; their task instances are then read by run (index
  ``task_instance (dag_id, run_id)``). No statement filters ``task_instance`` on a column Airflow
  does not index, so that table's size (the largest of the metadata database) does not weigh on a
  tick. The runs are the scan's (``dag_run.updated_at``, a sequential scan of the runs table: the
  scheduler ends runs without an audit-log row).
- :class:`ScanSource`: the runs and task instances whose ``updated_at`` is in the window (Airflow
  indexes neither column: a sequential scan of both tables per window). Used when the Airflow user
  may not read the audit log (Airflow 2: only the Admin role may) or Airflow is older than 2.9.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from airlift_client import AirflowInstance, TooManyRows
from airlift_dagster.sensor._time import _TICK
from airlift_protocol import DagRun, TaskInstance

#: :attr:`ChangeSource.name` of each source (the cursor records which one sized its windows).
SCAN, AUDIT_LOG = "scan", "log"

#: Finished task-instance states the scheduler sets without an audit-log row (read with their run
#: once it ends; ``skipped`` is no event; a task succeeded without running is read with its run).
SCHEDULER_SET_STATES = ("upstream_failed",)

#: Audit-log events the audit-log source does not read (Airflow leaves them out: half the rows of a
#: busy window): a try's start (a running task instance is no event; its run's start is read with
#: the runs).
SKIPPED_EVENTS = ("running",)


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

    def then(self, later: WindowRows) -> WindowRows:
        """The rows of this window and of ``later``, the window that follows it."""
        return WindowRows([*self.runs, *later.runs], [*self.tis, *later.tis], self.size + later.size, self.listed + later.listed)


class ChangeSource(Protocol):
    """Reads the changes of a time window (see the module docstring)."""

    name: ClassVar[str]

    def read(self, lo: datetime, hi: datetime, max_rows: int | None) -> WindowRows | TooManyRows:
        """The window's rows, or :class:`TooManyRows` when its size is over ``max_rows`` (only its first pages read)."""

    def count(self, lo: datetime, hi: datetime) -> int:
        """The window's size (what :attr:`WindowRows.size` says), one or two one-item requests."""


@dataclass
class ScanSource:
    """Rows whose ``updated_at`` is in the window: runs plus task instances of every DAG count."""

    airflow_instance: AirflowInstance
    dag_ids: frozenset[str]
    name: ClassVar[str] = SCAN

    def read(self, lo: datetime, hi: datetime, max_rows: int | None) -> WindowRows | TooManyRows:
        rows = self.airflow_instance.read_updated(updated_at_gte=lo, updated_at_lte=hi, max_rows=max_rows)
        if isinstance(rows, TooManyRows):
            return rows
        runs, tis = rows
        listed = len(runs) + len(tis)
        return WindowRows([r for r in runs if r.dag_id in self.dag_ids], [t for t in tis if t.dag_id in self.dag_ids], listed, listed)

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

    def read(self, lo: datetime, hi: datetime, max_rows: int | None) -> WindowRows | TooManyRows:
        rows = self.airflow_instance.read_event_logs(after=lo - _TICK, before=hi + _TICK, max_rows=max_rows, skip_events=SKIPPED_EVENTS)
        if isinstance(rows, TooManyRows):
            return rows
        changed = self.airflow_instance.read_updated(updated_at_gte=lo, updated_at_lte=hi, task_instances=False,
                                                     max_rows=None if max_rows is None else max_rows - len(rows))
        if isinstance(changed, TooManyRows):
            return TooManyRows(len(rows) + changed.counted)
        all_runs = changed[0]
        runs = [r for r in all_runs if r.dag_id in self.dag_ids]
        whole: set[tuple[str, str]] = set()
        tasks: dict[tuple[str, str, str], set[int] | None] = {}
        for row in rows:
            if row.dag_id not in self.dag_ids or not row.run_id:
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
        named = {*whole, *((d, r) for d, r, _ in tasks)}
        size = len(rows) + len(all_runs)
        if max_rows is not None and size + len(tasks) + len(whole) > max_rows:
            return TooManyRows(size + len(tasks) + len(whole))  # with the task instances they name, over the budget
        tis: list[TaskInstance] = []
        read = 0
        for ti in self._task_instances(named, whole, {t for _, _, t in tasks}):
            read += 1
            indexes = tasks.get((ti.dag_id, ti.run_id, ti.task_id), set())
            if (ti.dag_id, ti.run_id) in whole or indexes is None or ti.map_index in indexes:
                tis.append(ti)
        ended = sorted((r.dag_id, r.run_id) for r in runs if r.is_finished)
        if ended:
            have = {t.key for t in tis}
            for ti in self.airflow_instance.iter_task_instances_of_runs(ended, states=list(SCHEDULER_SET_STATES)):
                read += 1
                if ti.key not in have:
                    tis.append(ti)
        return WindowRows(runs, tis, size, size + read)

    def _task_instances(self, runs: set[tuple[str, str]], whole: set[tuple[str, str]], task_ids: set[str]) -> Iterable[TaskInstance]:
        if not runs:
            return []
        if whole:
            return self.airflow_instance.iter_task_instances_of_runs(sorted(runs))
        return self.airflow_instance.iter_task_instances_of_runs(sorted(runs), task_ids=sorted(task_ids))

    def count(self, lo: datetime, hi: datetime) -> int:
        return (self.airflow_instance.count_event_logs(after=lo - _TICK, before=hi + _TICK, skip_events=SKIPPED_EVENTS)
                + self.airflow_instance.count_updated(updated_at_gte=lo, updated_at_lte=hi, task_instances=False))


__all__ = ["AUDIT_LOG", "SCAN", "SCHEDULER_SET_STATES", "AuditLogSource", "ChangeSource", "ScanSource", "WindowRows"]

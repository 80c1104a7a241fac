"""Live reads from Airflow for the command line (public ``AirflowInstance`` methods only)."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from airlift_client import AirflowInstance, AirflowNotFoundError, release_tuple
from airlift_dagster.cli._output import Output
from airlift_dagster.state import with_unlisted_dags
from airlift_protocol import AirflowImportError, ApiVersion, DagInfo, DagRun, TaskInfo, TaskInstance

__all__ = ["TRY_COUNTED_ON_RUN", "LiveDag", "fetch_live_dags", "latest_task_instances", "topological_task_ids"]


@dataclass(frozen=True)
class LiveDag:
    """A DAG as Airflow serves it now, with its tasks."""

    dag: DagInfo
    tasks: tuple[TaskInfo, ...]
    #: Airflow's import error for the DAG's file (the tasks are then those Airflow last parsed).
    import_error: AirflowImportError | None = None

    def broken_note(self) -> str | None:
        """What to tell the user when Airflow fails to import the DAG's file."""
        if self.import_error is None:
            return None
        return (f"Airflow fails to import the file of DAG {self.dag.dag_id!r} ({self.import_error.filename}): "
                f"{self.import_error.summary}; fix the file (`airflow dags list-import-errors` shows the whole error)")

    @property
    def task_ids(self) -> tuple[str, ...]:
        """Task ids, upstream tasks first."""
        return topological_task_ids(self.tasks)

    def task(self, task_id: str) -> TaskInfo | None:
        """One task by id."""
        return next((t for t in self.tasks if t.task_id == task_id), None)


def topological_task_ids(tasks: Sequence[TaskInfo]) -> tuple[str, ...]:
    """Task ids with every task after its upstream tasks (ties keep Airflow's order).

    >>> topological_task_ids([])
    ()
    """
    order = [t.task_id for t in tasks]
    upstream = {t.task_id: set(t.upstream_task_ids) & set(order) for t in tasks}
    done: list[str] = []
    placed: set[str] = set()
    while len(done) < len(order):
        ready = [t for t in order if t not in placed and upstream[t] <= placed]
        if not ready:  # a cycle cannot happen in Airflow; keep the rest in Airflow's order
            ready = [t for t in order if t not in placed]
        for task_id in ready:
            placed.add(task_id)
            done.append(task_id)
    return tuple(done)


def matches(dag_id: str, patterns: Sequence[str]) -> bool:
    """Whether a DAG id matches any glob pattern (no patterns: every DAG)."""
    return not patterns or any(fnmatch.fnmatchcase(dag_id, p) for p in patterns)


def fetch_live_dags(
    instance: AirflowInstance,
    out: Output,
    *,
    patterns: Sequence[str] = (),
    dag_ids: Sequence[str] | None = None,
    expected: Sequence[str] = (),
) -> dict[str, LiveDag]:
    """The DAGs Airflow serves (those matching ``patterns``, or the ``dag_ids`` that exist), with their
    tasks, read concurrently behind a progress bar. ``dag_ids`` and ``expected`` ids that Airflow no
    longer lists because their file fails to import are included, with Airflow's import error."""
    wanted = set(dag_ids) if dag_ids is not None else None
    dags = [
        d for d in instance.iter_dags() if matches(d.dag_id, patterns) and (wanted is None or d.dag_id in wanted)
    ]
    import_errors = with_unlisted_dags(instance, dags, [*(wanted or ()), *expected], keep=lambda d: matches(d.dag_id, patterns))
    dags.sort(key=lambda d: d.dag_id)
    tasks = out.map_with_progress("Reading tasks", [d.dag_id for d in dags], lambda dag_id: _tasks(instance, dag_id))
    return {d.dag_id: LiveDag(dag=d, tasks=tuple(tasks[d.dag_id]), import_error=import_errors.get(d.dag_id)) for d in dags}


def _tasks(instance: AirflowInstance, dag_id: str) -> list[TaskInfo]:
    try:
        return instance.list_tasks(dag_id)
    except AirflowNotFoundError:  # a DAG whose file fails to import and that Airflow no longer parses
        return []


def _run_time(run: DagRun) -> datetime:
    return run.start_date or run.run_after or run.logical_date or datetime.min.replace(tzinfo=timezone.utc)


def latest_task_instances(
    instance: AirflowInstance, dag_ids: Sequence[str], *, days: float
) -> tuple[dict[str, DagRun], dict[tuple[str, str], TaskInstance]]:
    """The latest run of each DAG started in the last ``days`` days, and its task instances
    (``(dag_id, task_id)`` → the instance; mapped tasks give their highest map index), with the try number
    of an unfinished task as Airflow 2.10 and later count it (see :data:`TRY_COUNTED_ON_RUN`)."""
    if not dag_ids:
        return {}, {}
    since = datetime.now(timezone.utc) - timedelta(days=days)
    latest: dict[str, DagRun] = {}
    for run in instance.iter_dag_runs(dag_ids=list(dag_ids), start_date_gte=since):
        current = latest.get(run.dag_id)
        if current is None or _run_time(run) > _run_time(current):
            latest[run.dag_id] = run
    tis: dict[tuple[str, str], TaskInstance] = {}
    if latest:
        wanted = {(r.dag_id, r.run_id) for r in latest.values()}
        for ti in instance.iter_task_instances(
            dag_ids=sorted(latest), run_ids=sorted({r.run_id for r in latest.values()})
        ):
            if (ti.dag_id, ti.run_id) in wanted:
                tis[(ti.dag_id, ti.task_id)] = ti
    lowered = (instance.api_version is ApiVersion.V1 and any(ti.state in TRY_COUNTED_ON_RUN for ti in tis.values())
               and release_tuple(instance.get_airflow_version()) < (2, 10))
    if lowered:
        tis = {key: dataclasses.replace(ti, try_number=ti.try_number + 1) if ti.state in TRY_COUNTED_ON_RUN else ti
               for key, ti in tis.items()}
    return latest, tis


#: Task states whose try Airflow before 2.10 counts only once the task runs: the REST API shows the try of
#: a scheduled or queued task before it is counted, and a deferred or rescheduled task's lowered by one until
#: it runs again. :func:`latest_task_instances` shows the try that runs, as Airflow 2.10 and later do.
TRY_COUNTED_ON_RUN = frozenset({"scheduled", "queued", "deferred", "up_for_reschedule"})

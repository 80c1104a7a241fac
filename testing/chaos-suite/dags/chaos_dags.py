"""The chaos suite's DAGs. chaos_main: observed tasks (one of them dynamically mapped), two migrated
tasks and a last observed task; a run's conf scripts failures:

- ``{"fail_load": true}``: ``load`` fails (no retry), so the run fails;
- ``{"fail_after_launch": ["flaky"]}``: the first try of ``flaky`` fails right after it launched its
  Dagster run (as if its worker were lost); the retry finds that run and re-attaches to it;
- ``{"wait_on_worker": true}``: the migrated tasks wait for their Dagster runs on their worker (not deferred).

The migrated tasks name Celery queues (``migrated`` on worker_a's, ``flaky`` on worker_b's; the
production-shaped deployment runs one worker per queue; the LocalExecutor ignores queues).

The migrated tasks defer (the triggerer waits for their Dagster runs): while the suite keeps Dagster's
daemon stopped, runs stay queued, and tasks waiting on a worker would hold every executor slot
(the suite's Airflow 2 runs on PostgreSQL with the LocalExecutor, Airflow 3 standalone runs four at once), so no other task,
``flaky``'s retry included, could start.

chaos_late: one task, mapped on the Dagster side only when the suite says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airlift_airflow import (
    DagsterOperator,
    load_migration_state_from_yaml,
    mark_as_dagster_migrating,
)

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _conf(context: Any) -> dict[str, Any]:
    return dict(getattr(context.get("dag_run"), "conf", None) or {})


def _work(*args: Any) -> str:
    return "done"


def _load(**context: Any) -> str:
    if _conf(context).get("fail_load"):
        raise RuntimeError("load fails on purpose (run conf fail_load)")
    return "loaded"


class ChaosOperator(DagsterOperator):
    """Deferrable DagsterOperator whose first try can be made to fail after its launch, before it
    defers (run conf fail_after_launch)."""

    _lose_worker = False

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> list[str]:
        ti = context["ti"]
        self._lose_worker = ti.task_id in (_conf(context).get("fail_after_launch") or []) and int(ti.try_number) == 1
        if _conf(context).get("wait_on_worker"):
            self.deferrable = False
        return super().execute(context)

    def defer(self, **kwargs: Any) -> Any:
        if self._lose_worker:
            runs = list(getattr(kwargs.get("trigger"), "run_ids", []))
            raise RuntimeError(f"the worker of this try is lost after launching Dagster run(s) {runs}")
        return super().defer(**kwargs)


with DAG("chaos_main", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, max_active_runs=8) as main:
    extract = PythonOperator(task_id="extract", python_callable=_work)
    fan = PythonOperator.partial(task_id="fan", python_callable=_work).expand(op_args=[[1], [2], [3]])
    migrated = PythonOperator(task_id="migrated", python_callable=_work, queue="worker_a")
    flaky = PythonOperator(task_id="flaky", python_callable=_work, retries=1, retry_delay=timedelta(seconds=2), queue="worker_b")
    load = PythonOperator(task_id="load", python_callable=_load, retries=0)
    extract >> fan >> [migrated, flaky] >> load

with DAG("chaos_late", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, max_active_runs=8) as late:
    PythonOperator(task_id="late_task", python_callable=_work)

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
    dagster_operator_class=ChaosOperator,
)

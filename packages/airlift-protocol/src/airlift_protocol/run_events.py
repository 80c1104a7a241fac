"""The audit-log rows of DAG runs that airlift-airflow's listener writes, and what a reader makes of them.

Airflow writes an audit-log row (table ``log``, indexed on its time) for every try a task runs and
every REST or UI action, but none when its scheduler starts or ends a DAG run: a run whose tasks
did not run (``EmptyOperator`` only), a run ending after its last try's row, a run timing out. A
reader that must see every run end then has to filter ``dag_run`` on a column Airflow does not
index. airlift-airflow's listener (registered by its Airflow plugin) closes that gap: wherever
Airflow calls the DAG-run listeners (the scheduler, and the API server of Airflow 3), it adds a row
naming the run, in the same transaction as the run's new state when the run's session is open:

- :data:`RUN_RUNNING`, :data:`RUN_SUCCESS`, :data:`RUN_FAILED`: the run started or ended
  (``dag_id``, ``run_id``; ``extra`` is JSON with the state and Airflow's message).

The earliest such row a reader finds tells it since when the listener writes them.

>>> is_run_event("airlift.run.success"), is_run_event("success")
(True, False)
"""

from __future__ import annotations

__all__ = ["RUN_EVENTS", "RUN_FAILED", "RUN_RUNNING", "RUN_SUCCESS", "is_run_event"]

#: A DAG run started (written when Airflow calls ``on_dag_run_running``).
RUN_RUNNING = "airlift.run.running"
#: A DAG run succeeded (``on_dag_run_success``).
RUN_SUCCESS = "airlift.run.success"
#: A DAG run failed (``on_dag_run_failed``).
RUN_FAILED = "airlift.run.failed"
#: The run events, in the order a run writes them.
RUN_EVENTS = (RUN_RUNNING, RUN_SUCCESS, RUN_FAILED)


def is_run_event(event: str | None) -> bool:
    """Whether an audit-log event name is one of :data:`RUN_EVENTS`."""
    return event in RUN_EVENTS

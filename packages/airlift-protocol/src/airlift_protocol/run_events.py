"""The audit-log rows of DAG runs that airlift-airflow's listener writes, and what a reader makes of them.

Airflow writes an audit-log row (table ``log``, indexed on its time) for every try a task runs and
every REST or UI action, but none when its scheduler starts or ends a DAG run: a run whose tasks
did not run (``EmptyOperator`` only), a run ending after its last try's row, a run timing out. A
reader that must see every run end then has to filter ``dag_run`` on a column Airflow does not
index. airlift-airflow's listener (registered by its Airflow plugin) closes that gap: wherever
Airflow calls the DAG-run listeners (the scheduler, and the API server of Airflow 3), it adds a row
naming the run, in the same transaction as the run's new state when the run's session is open:

- :data:`RUN_RUNNING`, :data:`RUN_SUCCESS`, :data:`RUN_FAILED`: the run started or ended
  (``dag_id``, ``run_id``; ``extra`` is :func:`run_event_extra`'s JSON: the state, Airflow's message and
  the run as that Airflow's REST API shows it, so a reader needs no request per run).

The earliest such row a reader finds tells it since when the listener writes them.

>>> from datetime import datetime, timezone
>>> extra = run_event_extra(state="success", msg="", run={"dag_id": "d", "dag_run_id": "r", "state": "success",
...                         "end_date": "2026-01-01T00:00:30+00:00"})
>>> row = EventLog(event_log_id=1, event=RUN_SUCCESS, when=datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc),
...                api=ApiVersion.V2, dag_id="d", task_id=None, run_id="r", map_index=None, try_number=None, extra=extra)
>>> run = run_of_event(row)
>>> run.state, run.end_date.isoformat()
('success', '2026-01-01T00:00:30+00:00')
>>> is_run_event("airlift.run.success"), is_run_event("success")
(True, False)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from airlift_protocol.errors import RestPayloadError
from airlift_protocol.models import DagRun, EventLog

__all__ = ["RUN_EVENTS", "RUN_EVENT_FORMAT", "RUN_FAILED", "RUN_RUNNING", "RUN_SUCCESS", "is_run_event", "run_event_extra",
           "run_of_event"]

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


#: Version of :func:`run_event_extra`'s JSON (``"v"``); a reader takes the run of a row with another
#: version, or none, from Airflow instead.
RUN_EVENT_FORMAT = 1


def run_event_extra(*, state: str | None, msg: str | None, run: Mapping[str, Any]) -> str:
    """The ``extra`` of a run-event row: its format version, the run's state, Airflow's message and the
    run as the REST API of the writing Airflow shows it (``dag_id``, ``dag_run_id``, ``state``, the dates;
    never its ``conf``, which may hold secrets)."""
    return json.dumps({"v": RUN_EVENT_FORMAT, "state": state, "msg": msg or "", "run": dict(run)}, separators=(",", ":"),
                      default=str)


def run_of_event(row: EventLog) -> DagRun | None:
    """The run a run-event row carries, as its writer saw it when the run reached the row's state
    (``None``: not a run-event row, or one without a run this reader understands: read the run from
    Airflow instead)."""
    if not is_run_event(row.event) or not row.extra:
        return None
    try:
        data = json.loads(row.extra)
        if not isinstance(data, dict) or data.get("v") != RUN_EVENT_FORMAT or not isinstance(data.get("run"), dict):
            return None
        run = DagRun.from_rest(data["run"], api=row.api)
    except (ValueError, RestPayloadError):
        return None
    return run if (run.dag_id, run.run_id) == (row.dag_id, row.run_id) else None

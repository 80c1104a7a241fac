"""Run events: a row in Airflow's audit log each time a DAG run starts or ends.

Airflow's audit log (table ``log``, indexed on its time) has a row for every task try and every
REST or UI action, but none when the scheduler starts or ends a DAG run. Without one, a reader that
must see every run end (the Airlift sensor) filters ``dag_run`` on ``updated_at``, which Airflow
does not index: a scan of the table per read, whose cost grows with the metadata database. This
listener, registered by :class:`airlift_airflow.plugin.AirliftPlugin`, writes
:data:`~airlift_protocol.RUN_RUNNING`, :data:`~airlift_protocol.RUN_SUCCESS` or
:data:`~airlift_protocol.RUN_FAILED` (``dag_id``, ``run_id``, ``owner`` ``airlift``, ``extra``: the
state and Airflow's message as JSON) wherever Airflow calls the DAG-run listeners: in the scheduler
(runs it starts, ends, times out) and, on Airflow 3, in the API server (runs marked by REST or the
UI; Airflow 2 calls no listener there, and logs the REST or UI action with the run instead).

The row joins the session that holds the run (the scheduler's transaction, which commits the run's
new state and the row together), so a reader never sees one without the other; a run held by no
session gets a session of its own. On by default; ``[airlift] run_events = False``
(``AIRFLOW__AIRLIFT__RUN_EVENTS=False``) switches it off, and the sensor then notices rows missing
for runs that ended and reads runs by ``updated_at`` again. A failure is logged and never affects
the run.

>>> run_event_listener.on_dag_run_success(dag_run=None, msg="")  # no run: nothing happens
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airlift_airflow.version_compat import AIRFLOW_V_3_0_PLUS, airflow_conf, hookimpl
from airlift_protocol import RUN_FAILED, RUN_RUNNING, RUN_SUCCESS, run_event_extra

__all__ = ["RunEventListener", "enum_value", "run_event_listener"]

log = logging.getLogger("airlift_airflow.run_events")

#: ``owner`` of the rows (Airflow's audit-log page shows it as the row's user).
OWNER = "airlift"


def run_events_enabled() -> bool:
    """``[airlift] run_events`` (default ``True``)."""
    value = airflow_conf.get("airlift", "run_events", fallback="True")
    return str(value).strip().lower() not in ("0", "false", "no", "off")


class RunEventListener:
    """Airflow listener (pluggy hook implementations) writing one audit-log row per DAG-run start and end."""

    def __repr__(self) -> str:
        return "RunEventListener()"

    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        record_run_event(dag_run, RUN_RUNNING, msg)

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        record_run_event(dag_run, RUN_SUCCESS, msg)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        record_run_event(dag_run, RUN_FAILED, msg)


def record_run_event(dag_run: Any, event: str, msg: str | None) -> None:
    """Add the row of ``event`` for ``dag_run`` to the session holding the run (committed with it),
    else write it in a session of its own. Never raises."""
    if dag_run is None:
        return
    try:
        if not run_events_enabled():
            return
        from airflow.models.log import Log
        from sqlalchemy.orm import object_session

        state = enum_value(getattr(dag_run, "state", None))
        extra = run_event_extra(state=state, msg=msg, run=rest_view(dag_run, state))
        row = Log(event=event, owner=OWNER, extra=extra, dag_id=str(dag_run.dag_id), run_id=str(dag_run.run_id))
        session = object_session(dag_run)
        if session is not None:
            session.add(row)  # committed by the session's owner, with the run's new state
            return
        from airflow.utils.session import create_session

        with create_session() as own:
            own.add(row)
    except Exception:
        log.exception("Airlift run events: could not record %s for run %r of DAG %r (the run is not affected)",
                      event, getattr(dag_run, "run_id", None), getattr(dag_run, "dag_id", None))


def rest_view(dag_run: Any, state: str | None) -> dict[str, Any]:
    """The run as this Airflow's REST API shows it (:func:`airlift_protocol.run_of_event` reads it back):
    ids, state, type and dates; never ``conf``."""
    view: dict[str, Any] = {"dag_id": str(dag_run.dag_id), "dag_run_id": str(dag_run.run_id), "state": state,
                            "run_type": enum_value(getattr(dag_run, "run_type", None))}
    names = ["start_date", "end_date", "data_interval_start", "data_interval_end", "queued_at"]
    names += ["logical_date", "run_after"] if AIRFLOW_V_3_0_PLUS else ["execution_date", "logical_date"]
    for name in names:
        value: Any = getattr(dag_run, name, None)
        view[name] = value.isoformat() if isinstance(value, datetime) else None
    return view


def enum_value(value: Any) -> str | None:
    """An Airflow enum (a state, a run type) or plain value as text; ``None`` stays ``None``."""
    return None if value is None else str(getattr(value, "value", value))


#: The listener the plugin registers.
run_event_listener = RunEventListener()

"""The Airflow plugin of airlift-airflow (entry point ``airflow.plugins``): registers the run-event
listener (an audit-log row per DAG-run start and end, :mod:`airlift_airflow.run_events`) and the
push listener, which stays idle unless ``[airlift] push_enabled`` is true.

>>> AirliftPlugin.name
'airlift'
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airlift_airflow.listener import listener
from airlift_airflow.run_events import run_event_listener

__all__ = ["AirliftPlugin"]


class AirliftPlugin(AirflowPlugin):  # type: ignore[misc]
    """Airlift's Airflow plugin: the run-event listener (:mod:`airlift_airflow.run_events`) and the
    push listener (:mod:`airlift_airflow.listener`)."""

    name = "airlift"
    listeners = [run_event_listener, listener]

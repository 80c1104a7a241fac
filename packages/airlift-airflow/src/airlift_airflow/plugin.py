"""The Airflow plugin of airlift-airflow (entry point ``airflow.plugins``): registers the push
listener, which stays idle unless ``[airlift] push_enabled`` is true.

>>> AirliftPlugin.name
'airlift'
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airlift_airflow.listener import listener

__all__ = ["AirliftPlugin"]


class AirliftPlugin(AirflowPlugin):  # type: ignore[misc]
    """Airlift's Airflow plugin: the push listener (see :mod:`airlift_airflow.listener`)."""

    name = "airlift"
    listeners = [listener]

"""A task that defers for an hour: what ``airlift state status`` shows for a deferred try."""

from __future__ import annotations

from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.sensors.date_time import DateTimeSensorAsync

with DAG("cli_deferred", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    DateTimeSensorAsync(task_id="wait", target_time="{{ (macros.datetime.utcnow() + macros.timedelta(hours=1)).isoformat() }}")

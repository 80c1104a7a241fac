"""A two-task DAG whose runs Dagster shows as runs of its own (see defs.py: mirror_runs)."""

from __future__ import annotations

from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _done() -> str:
    return "ok"


with DAG("nightly_export", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    extract = PythonOperator(task_id="extract", python_callable=_done)
    export = PythonOperator(task_id="export", python_callable=_done)
    extract >> export

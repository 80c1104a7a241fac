"""A daily DAG: each run's data interval names one day, the Dagster partition its task builds."""

from __future__ import annotations

from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _build_day(**context: object) -> str:
    return f"sales of {context['ds']}"


with DAG("daily_sales", start_date=datetime(2024, 1, 1), schedule="@daily", catchup=False, max_active_runs=4):
    PythonOperator(task_id="build_day", python_callable=_build_day)

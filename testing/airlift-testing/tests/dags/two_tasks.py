"""A 2-task DAG that works on Airflow 2 and 3."""

from __future__ import annotations

from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _hello() -> str:
    return "hello"


with DAG("airlift_two_tasks", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, tags=["airlift-test"]):
    first = PythonOperator(task_id="first", python_callable=_hello)
    second = PythonOperator(task_id="second", python_callable=_hello)
    first >> second

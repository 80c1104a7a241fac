"""Two DAGs linked by an Airflow dataset (Airflow 2) / asset (Airflow 3): publish_orders writes it,
build_orders_report runs whenever it is updated."""

from __future__ import annotations

from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
    from airflow.sdk import Asset as Dataset
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.datasets import Dataset
    from airflow.operators.python import PythonOperator

ORDERS = Dataset("s3://lake/orders/daily.parquet")


def _done() -> str:
    return "ok"


with DAG("publish_orders", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    PythonOperator(task_id="write_orders", python_callable=_done, outlets=[ORDERS])

with DAG("build_orders_report", start_date=datetime(2024, 1, 1), schedule=[ORDERS], catchup=False):
    PythonOperator(task_id="report", python_callable=_done)

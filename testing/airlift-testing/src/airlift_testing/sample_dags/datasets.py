"""DAGs that produce and consume Airflow datasets (2.x) / assets (3.x), and time-scheduled DAGs
whose runs name Dagster partitions (one aligned with daily partitions, one seven days long)."""

from __future__ import annotations

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, DeltaDataIntervalTimetable
    from airflow.sdk import Asset as Dataset
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.datasets import Dataset
    from airflow.operators.python import PythonOperator
    from airflow.timetables.interval import DeltaDataIntervalTimetable

START = datetime(2024, 1, 1)
ORDERS = Dataset("warehouse://sales/orders.daily")
REPORT = Dataset("warehouse://sales/report")


def _ok() -> str:
    return "ok"


with DAG("dataset_producer", start_date=START, schedule=None, catchup=False, tags=["datasets"],
         default_args={"owner": "sales-team"}):
    PythonOperator(task_id="write_orders", python_callable=_ok, outlets=[ORDERS])

with DAG("dataset_consumer", start_date=START, schedule=[ORDERS], catchup=False, tags=["datasets"]):
    PythonOperator(task_id="read_orders", python_callable=_ok, inlets=[ORDERS], outlets=[REPORT])

with DAG("daily_partitioned", start_date=START, schedule="@daily", catchup=False, max_active_runs=4):
    PythonOperator(task_id="build_day", python_callable=_ok)

# A seven-day data interval on both generations (Airflow 3's plain timedelta schedule has empty intervals).
with DAG("seven_day_interval", start_date=START, schedule=DeltaDataIntervalTimetable(timedelta(days=7)), catchup=False):
    PythonOperator(task_id="build_week", python_callable=_ok)

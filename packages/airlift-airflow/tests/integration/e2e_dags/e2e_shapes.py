"""Two code locations behind one task, a daily-partitioned asset, and a DAG migrated as a whole."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airlift_airflow import load_migration_state_from_yaml, mark_as_dagster_migrating

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import PythonOperator


def _whole_in_airflow() -> None:
    (Path(os.environ["AIRLIFT_E2E_MARKERS"]) / "airflow_ran_whole").write_text("airflow")


with DAG("e2e_two_locations", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as two_locations:
    EmptyOperator(task_id="both", retries=1, retry_delay=timedelta(seconds=1))

with DAG("e2e_daily", start_date=datetime(2024, 1, 1), schedule="@daily", catchup=False) as daily:
    EmptyOperator(task_id="daily")

with DAG("e2e_whole", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as whole:
    PythonOperator(task_id="extract", python_callable=_whole_in_airflow) >> EmptyOperator(task_id="load")

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
)

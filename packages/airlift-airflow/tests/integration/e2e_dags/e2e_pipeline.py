"""Three tasks; the state file decides whether `middle` runs here or in Dagster."""

from __future__ import annotations

import os
from datetime import datetime
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


def _middle_in_airflow() -> None:
    marker = Path(os.environ["AIRLIFT_E2E_MARKERS"]) / "airflow_ran_middle"
    marker.write_text("airflow")


with DAG("e2e_pipeline", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    first = EmptyOperator(task_id="first")
    middle = PythonOperator(task_id="middle", python_callable=_middle_in_airflow, retries=0)
    last = EmptyOperator(task_id="last")
    first >> middle >> last

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
)

"""A DAG that runs every minute and whose one task runs in Dagster: the decommission test's subject."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airlift_airflow import load_migration_state_from_yaml, mark_as_dagster_migrating

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator


with DAG("decom_minutely", start_date=datetime(2024, 1, 1), schedule="* * * * *", catchup=False, max_active_runs=1) as dag:
    EmptyOperator(task_id="build")

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
)

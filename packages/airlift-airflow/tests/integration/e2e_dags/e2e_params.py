"""A migrated task of a DAG with params: its Dagster asset declares a Config, and a triggered run's conf
overrides a param."""

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

with DAG("e2e_params", start_date=datetime(2024, 1, 1), schedule=None, catchup=False,
         params={"region": "us", "limit": 100}) as params_dag:
    EmptyOperator(task_id="with_params")

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
)

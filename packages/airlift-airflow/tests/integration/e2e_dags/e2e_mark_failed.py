"""A deferred migrated task the test marks failed while its Dagster run goes on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from airlift_airflow import (
    DagsterOperator,
    load_migration_state_from_yaml,
    mark_as_dagster_migrating,
)

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator


class DeferredLong(DagsterOperator):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs, deferrable=True, poll_interval=1.0)


with DAG("e2e_mark_failed", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    EmptyOperator(task_id="deferred_long", retries=0)

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
    dagster_operator_class=DeferredLong,
)

"""chaos_named: one migrated task whose operator is told an instance name Dagster does not have."""

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
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator


class StagingOperator(DagsterOperator):
    """A migrated task configured with another instance's name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs, airflow_instance_name="staging")


def _work() -> str:
    return "done"


with DAG("chaos_named", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as named:
    PythonOperator(task_id="named_task", python_callable=_work, retries=0)

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
    dagster_operator_class=StagingOperator,
)

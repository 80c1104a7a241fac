"""A migrated task built by an operator factory: explicit asset keys of an asset without Airlift's tags,
run tags, and a partition chosen by a get_partition_key override (the month of the logical date)."""

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


class MonthlyOperator(DagsterOperator):
    def get_partition_key(self, context: Any, assets: Any) -> str | None:
        return f"{context['logical_date']:%Y-%m}-01"


def factory(task: Any, kwargs: dict[str, Any]) -> DagsterOperator:
    return MonthlyOperator(**kwargs, asset_keys=[["e2e", "custom_table"]], run_tags={"e2e/built_by": f"factory:{task.task_id}"})


with DAG("e2e_custom", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as custom:
    EmptyOperator(task_id="custom")

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
    operator_factory=factory,
)

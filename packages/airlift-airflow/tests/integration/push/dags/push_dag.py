"""Push mode end to end: two observed tasks, one migrated task, one unmapped task."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airlift_airflow import load_migration_state_from_yaml, mark_as_dagster_migrating

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _work() -> str:
    return "done"


with DAG("push_dag", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, max_active_runs=4) as dag:
    a = PythonOperator(task_id="a", python_callable=_work)
    b = PythonOperator(task_id="b", python_callable=_work)
    c = PythonOperator(task_id="c", python_callable=_work)
    unmapped = PythonOperator(task_id="unmapped", python_callable=_work)
    a >> b >> c >> unmapped

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
)

with DAG("push_plain", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as plain:
    PythonOperator(task_id="x", python_callable=_work)

"""260 tasks behind a failing gate: more task instances than one page holds, without running them
(the scheduler marks them upstream_failed)."""

from __future__ import annotations

from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.empty import EmptyOperator
    from airflow.operators.python import PythonOperator


def _closed() -> None:
    raise RuntimeError("the gate is closed")


with DAG("wide_dag", start_date=datetime(2024, 1, 1), schedule=None, catchup=False):
    gate = PythonOperator(task_id="gate", python_callable=_closed)
    gate >> [EmptyOperator(task_id=f"t_{i:03d}") for i in range(260)]

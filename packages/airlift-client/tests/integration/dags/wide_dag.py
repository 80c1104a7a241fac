"""More task instances than one page holds, without running them: a task mapped over 260 literal
items (Airflow creates map indexes 0..259 with the run) and 5 plain tasks, all behind a failing gate,
so the scheduler marks them upstream_failed."""

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


def _item(i: int) -> int:
    return i


with DAG("wide_dag", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, max_active_tasks=300):
    gate = PythonOperator(task_id="gate", python_callable=_closed)
    mapped = PythonOperator.partial(task_id="mapped", python_callable=_item).expand(op_args=[[i] for i in range(260)])
    gate >> mapped
    gate >> [EmptyOperator(task_id=f"t_{i}") for i in range(5)]

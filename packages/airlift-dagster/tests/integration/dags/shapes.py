"""DAGs with the shapes real deployments have: mapped tasks, retries, failures, dotted ids, branches."""

from __future__ import annotations

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.operators.python import PythonOperator

START = datetime(2024, 1, 1)


def _ok() -> str:
    return "ok"


def _fail() -> None:
    raise RuntimeError("this task fails on purpose")


with DAG(
    "team.sales-daily_v2",
    start_date=START,
    schedule=None,
    catchup=False,
    tags=["sales", "daily"],
    description="A DAG id with dots and dashes, and parallel branches.",
    default_args={"owner": "sales-team"},
):
    extract = PythonOperator(task_id="extract", python_callable=_ok)
    left = PythonOperator(task_id="transform_left", python_callable=_ok)
    right = PythonOperator(task_id="transform_right", python_callable=_ok)
    load = PythonOperator(task_id="load", python_callable=_ok)
    extract >> [left, right] >> load

with DAG("mapped_dag", start_date=START, schedule=None, catchup=False, tags=["mapped"]):

    @task
    def make_items() -> list[int]:
        return [1, 2, 3]

    @task
    def process(item: int) -> int:
        return item * 2

    process.expand(item=make_items())

with DAG("failing_dag", start_date=START, schedule=None, catchup=False):
    fine = PythonOperator(task_id="fine", python_callable=_ok)
    broken = PythonOperator(task_id="broken", python_callable=_fail, retries=1, retry_delay=timedelta(seconds=1))
    after = PythonOperator(task_id="after_broken", python_callable=_ok)
    fine >> broken >> after

"""Four independent tasks of equal length: with a parallel executor they run at the same time and
end within about a second of each other."""

from __future__ import annotations

import time
from datetime import datetime

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator


def _work() -> None:
    time.sleep(3)


with DAG("airlift_parallel", start_date=datetime(2024, 1, 1), schedule=None, catchup=False, tags=["airlift-test"]):
    for index in range(4):
        PythonOperator(task_id=f"part_{index}", python_callable=_work)

"""Paused DAGs, one per timetable form: the decommission test reads how Airflow serves each one and
checks its translation (they never run)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pendulum

try:  # Airflow 3
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk import Asset as Dataset
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
    from airflow.timetables.trigger import CronTriggerTimetable
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.datasets import Dataset
    from airflow.operators.empty import EmptyOperator
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
    from airflow.timetables.trigger import CronTriggerTimetable

A = Dataset("warehouse://decom/a")
B = Dataset("warehouse://decom/b")
FORMS = {
    "form_none": None,
    "form_once": "@once",
    "form_daily": "@daily",
    "form_cron": "*/5 * * * *",
    "form_delta": timedelta(hours=2),
    "form_cron_trigger": CronTriggerTimetable("0 3 * * *", timezone="Europe/Paris"),  # in a Paris DAG
    "form_tz_mismatch": CronTriggerTimetable("0 3 * * *", timezone="Europe/Paris"),  # in a UTC DAG
    "form_cron_interval": CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    "form_delta_interval": DeltaDataIntervalTimetable(timedelta(days=7)),
    "form_one_dataset": [A],
    "form_any_dataset": (A | B),
    "form_nested_dataset": (A | (A & B)),
    "form_continuous": "@continuous",
}
for dag_id, schedule in FORMS.items():
    start = pendulum.datetime(2024, 1, 1, tz="Europe/Paris") if dag_id == "form_cron_trigger" else datetime(2024, 1, 1)
    with DAG(dag_id, start_date=start, schedule=schedule, catchup=dag_id == "form_cron",
             max_active_runs=1):
        EmptyOperator(task_id="t")

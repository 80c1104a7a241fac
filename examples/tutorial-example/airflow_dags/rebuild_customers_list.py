"""The tutorial DAG: load raw customers, build the dbt models, export customers to CSV."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from tutorial_example.airflow_operators import LoadCSVToDuckDB
from tutorial_example.shared.load_csv_to_duckdb import export_table_to_csv
from tutorial_example.shared.paths import dbt_project_path, duckdb_path, export_path
from tutorial_example.shared.tutorial_loads import raw_customers_load

from airlift_airflow import load_migration_state_from_yaml, mark_as_dagster_migrating

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator

DBT = Path(sys.executable).parent / "dbt"


def export_customers() -> int:
    return export_table_to_csv(duckdb_path=duckdb_path(), table="main.customers", csv_path=export_path())


with DAG("rebuild_customers_list", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    load_raw_customers = LoadCSVToDuckDB(task_id="load_raw_customers", load=raw_customers_load())
    run_dbt_model = BashOperator(
        task_id="run_dbt_model",
        bash_command=f"{DBT} build --project-dir {dbt_project_path()} --profiles-dir {dbt_project_path()} --target-path {dbt_project_path() / 'target' / 'airflow'}",
        env={**os.environ, "TUTORIAL_DUCKDB_PATH": str(duckdb_path())},
    )
    export = PythonOperator(task_id="export_customers", python_callable=export_customers)
    load_raw_customers >> run_dbt_model >> export

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
)

"""DAG builders for the tests: every way users write DAGs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airlift_airflow.version_compat import AIRFLOW_V_3_0_PLUS, DAG

if AIRFLOW_V_3_0_PLUS:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import TaskGroup, dag, task
else:
    from airflow.decorators import dag, task
    from airflow.models.dagbag import DagBag
    from airflow.operators.bash import BashOperator
    from airflow.operators.empty import EmptyOperator
    from airflow.utils.task_group import TaskGroup

START = datetime(2024, 1, 1)


def context_manager_dag() -> dict[str, Any]:
    with DAG("ctx.dag-1", start_date=START, schedule=None, tags=["team"]) as d:
        load = BashOperator(task_id="load", bash_command="echo load", retries=3, retry_delay=timedelta(seconds=7),
                            pool="etl_pool", queue="etl", owner="data-team", trigger_rule="all_done",
                            execution_timeout=timedelta(minutes=5), priority_weight=9, doc_md="Loads raw data.")
        build = EmptyOperator(task_id="build")
        with TaskGroup("grp"):
            inner = EmptyOperator(task_id="inner")
        export = EmptyOperator(task_id="export")
        load >> build >> [inner, export]
    return {"dag": d, "__file__": "/dags/ctx.py"}


def constructor_dag() -> dict[str, Any]:
    d = DAG("plain_dag", start_date=START, schedule=None)
    a = EmptyOperator(task_id="a", dag=d)
    b = EmptyOperator(task_id="b", dag=d)
    a >> b
    return {"my_dag": d, "__file__": "/dags/plain.py"}


def decorator_dag() -> dict[str, Any]:
    @dag(dag_id="decorated", start_date=START, schedule=None)
    def decorated() -> None:
        @task
        def first() -> int:
            return 1

        @task
        def second(x: int) -> int:
            return x

        second(first())

    return {"decorated_dag": decorated(), "__file__": "/dags/decorated.py"}


def mapped_dag() -> dict[str, Any]:
    with DAG("mapped", start_date=START, schedule=None) as d:
        @task
        def double(x: int) -> int:
            return 2 * x

        @task
        def total(values: list[int]) -> int:
            return sum(values)

        total(double.expand(x=[1, 2, 3]))
    return {"dag": d, "__file__": "/dags/mapped.py"}


def dag_file(dag_id: str, task_ids: tuple[str, ...], *, assign: bool) -> str:
    """Source of a DAG file as users write it, ending with the mark_as_dagster_migrating call."""
    chain = " >> ".join(f'EmptyOperator(task_id="{t}")' for t in task_ids)
    with_line = f'with DAG("{dag_id}", start_date=datetime(2024, 1, 1), schedule=None)' + (" as dag:" if assign else ":")
    return f"""
from datetime import datetime
from pathlib import Path
from airlift_airflow import load_migration_state_from_yaml, mark_as_dagster_migrating
from airlift_airflow.version_compat import DAG
from dag_shapes import EmptyOperator

{with_line}
    {chain}

mark_as_dagster_migrating(
    global_vars=globals(),
    migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
)
"""


def parse_dag_folder(folder: Any) -> Any:
    """Parse a DAG folder the way Airflow's DAG processor does (DagBag)."""
    if AIRFLOW_V_3_0_PLUS:
        return DagBag(dag_folder=str(folder))  # Airflow 3 never loads the examples here
    return DagBag(dag_folder=str(folder), include_examples=False)

"""airlift-airflow: move Airflow tasks to Dagster one at a time, from inside Airflow.

>>> from pathlib import Path                                                      # doctest: +SKIP
>>> from airlift_airflow import mark_as_dagster_migrating, load_migration_state_from_yaml  # doctest: +SKIP
>>> mark_as_dagster_migrating(                                                    # doctest: +SKIP
...     global_vars=globals(),
...     migration_state=load_migration_state_from_yaml(Path(__file__).parent / "migration_state"),
... )

Runs inside Airflow 2 or 3 (Airflow is the host, not a dependency) and never imports dagster: it
talks to Dagster's GraphQL API over HTTP.
"""

from __future__ import annotations

from airlift_airflow.dagster_api import DagsterGraphQLClient
from airlift_airflow.errors import (
    AirliftAirflowError,
    AirliftMigrationError,
    DagsterApiError,
    DagsterLaunchUnknownError,
    DagsterRunFailedError,
    DagsterUnreachableError,
)
from airlift_airflow.hook import DagsterHook
from airlift_airflow.migrating import OperatorFactory, mark_as_dagster_migrating
from airlift_airflow.operator import DagsterOperator, default_partition_key
from airlift_airflow.triggers import DagsterRunTrigger
from airlift_airflow.version import __version__
from airlift_protocol import (
    MigrationState,
    load_migration_state_from_yaml,
    set_dag_migrated,
    set_task_migrated,
)

__all__ = [
    "AirliftAirflowError",
    "AirliftMigrationError",
    "DagsterApiError",
    "DagsterGraphQLClient",
    "DagsterHook",
    "DagsterLaunchUnknownError",
    "DagsterOperator",
    "DagsterRunFailedError",
    "DagsterRunTrigger",
    "DagsterUnreachableError",
    "MigrationState",
    "OperatorFactory",
    "__version__",
    "default_partition_key",
    "load_migration_state_from_yaml",
    "mark_as_dagster_migrating",
    "set_dag_migrated",
    "set_task_migrated",
]

"""Test support for Airlift: the fake Airflow (:mod:`airlift_testing.fake_airflow`) for unit tests, and
real Airflow 2/3 and Dagster servers for integration tests."""

from __future__ import annotations

from pathlib import Path as _Path

from airlift_testing.airflow import AirflowServer, AirflowUser, airflow_venv
from airlift_testing.dagster import DagsterServer, dagster_venv
from airlift_testing.postgres import PostgresServer
from airlift_testing.procs import ServerProcess, ServerStartError, free_port, wait_until
from airlift_testing.venvs import ensure_venv, repo_root
from airlift_testing.version import __version__
from airlift_testing.versions import AIRFLOW_VERSIONS, DAGSTER_REQUIREMENTS, DEFAULT_PYTHON, PYTHONS

#: DAGs with the shapes real deployments have (dotted ids, branches, a mapped task, a failing task with a retry).
SAMPLE_DAGS = _Path(__file__).parent / "sample_dags" / "shapes.py"
#: DAGs producing and consuming datasets (Airflow 2) / assets (Airflow 3), and time-scheduled DAGs for partitions.
SAMPLE_DATASET_DAGS = _Path(__file__).parent / "sample_dags" / "datasets.py"

__all__ = [
    "AIRFLOW_VERSIONS",
    "DAGSTER_REQUIREMENTS",
    "DEFAULT_PYTHON",
    "PYTHONS",
    "SAMPLE_DAGS",
    "SAMPLE_DATASET_DAGS",
    "AirflowServer",
    "AirflowUser",
    "DagsterServer",
    "PostgresServer",
    "ServerProcess",
    "ServerStartError",
    "__version__",
    "airflow_venv",
    "dagster_venv",
    "ensure_venv",
    "free_port",
    "repo_root",
    "wait_until",
]

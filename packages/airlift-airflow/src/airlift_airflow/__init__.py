"""airlift-airflow: Runs inside Airflow: mark_as_dagster_migrating and DagsterOperator to move tasks to Dagster one at a time."""

from __future__ import annotations

from airlift_airflow.version import __version__

__all__ = ["__version__"]

"""airlift-dagster: Dagster definitions and the polling sensor that peer and observe an Airflow instance."""

from __future__ import annotations

from airlift_dagster.version import __version__

__all__ = ["__version__"]

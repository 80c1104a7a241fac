"""airlift-dbt: dbt manifest to Dagster assets (observe and migrate) for Airlift, built on dagster-dbt."""

from __future__ import annotations

from airlift_dbt.version import __version__

__all__ = ["__version__"]

"""airlift-client: Airflow REST client for Airflow 2 (/api/v1) and Airflow 3 (/api/v2), with basic, token and MWAA auth."""

from __future__ import annotations

from airlift_client.version import __version__

__all__ = ["__version__"]

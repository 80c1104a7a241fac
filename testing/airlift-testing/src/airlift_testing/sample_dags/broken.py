"""An Airflow DAG file that fails to import, so /importErrors has an entry to show."""

from __future__ import annotations

from airflow import DAG  # noqa: F401

raise RuntimeError("this DAG file fails to import on purpose")

"""Where the tutorial's files live; both sides derive them the same way."""

from __future__ import annotations

import os
from pathlib import Path

EXAMPLE_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = EXAMPLE_ROOT / "data"
DBT_PROJECT_DIR = EXAMPLE_ROOT / "dbt_project"
AIRFLOW_DAGS_DIR = EXAMPLE_ROOT / "airflow_dags"


def duckdb_path() -> Path:
    """The warehouse file: ``TUTORIAL_DUCKDB_PATH``, else ``.tutorial/jaffle_shop.duckdb`` in the example."""
    return Path(os.environ.get("TUTORIAL_DUCKDB_PATH") or EXAMPLE_ROOT / ".tutorial" / "jaffle_shop.duckdb")


def export_path() -> Path:
    """Where ``export_customers`` writes ``customers.csv``."""
    return Path(os.environ.get("TUTORIAL_EXPORT_DIR") or EXAMPLE_ROOT / ".tutorial") / "customers.csv"


def dbt_project_path() -> Path:
    """The tutorial's dbt project folder."""
    return DBT_PROJECT_DIR

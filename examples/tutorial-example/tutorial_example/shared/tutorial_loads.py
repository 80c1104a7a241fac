"""The raw table the tutorial loads with its custom operator (shared by the DAG and the Dagster factories)."""

from __future__ import annotations

from tutorial_example.shared.load_csv_to_duckdb import LoadCsvToDuckDbArgs
from tutorial_example.shared.paths import DATA_DIR, duckdb_path


def raw_customers_load() -> LoadCsvToDuckDbArgs:
    """Arguments for loading ``data/raw_customers.csv`` into ``raw_data.raw_customers``."""
    return LoadCsvToDuckDbArgs(
        table_name="raw_customers",
        csv_path=DATA_DIR / "raw_customers.csv",
        duckdb_path=duckdb_path(),
        column_names=["id", "first_name", "last_name"],
        duckdb_schema="raw_data",
        duckdb_database_name="jaffle_shop",
    )

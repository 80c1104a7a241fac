"""Custom Airflow operators of the tutorial (imported only inside Airflow)."""

from __future__ import annotations

from typing import Any

from tutorial_example.shared.load_csv_to_duckdb import LoadCsvToDuckDbArgs, load_csv_to_duckdb

try:  # Airflow 3
    from airflow.sdk import BaseOperator
except ImportError:  # Airflow 2
    from airflow.models import BaseOperator


class LoadCSVToDuckDB(BaseOperator):
    """Load a CSV file into a duckdb table; the table name and schema come from its arguments."""

    def __init__(self, *, load: LoadCsvToDuckDbArgs, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.load = load

    def execute(self, context: Any) -> int:
        rows = load_csv_to_duckdb(self.load)
        self.log.info("loaded %d rows into %s.%s", rows, self.load.duckdb_schema, self.load.table_name)
        return rows

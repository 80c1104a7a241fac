"""Load a CSV file into a duckdb table; the one implementation both Airflow and Dagster call."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadCsvToDuckDbArgs:
    """The arguments of a CSV load, and what they imply: the table a load produces."""

    table_name: str
    csv_path: Path
    duckdb_path: Path
    column_names: list[str]
    duckdb_schema: str
    duckdb_database_name: str

    @property
    def asset_key(self) -> list[str]:
        """The Dagster asset key of the table: ``[schema, table]``."""
        return [self.duckdb_schema, self.table_name]


def connect(duckdb_path: Path, *, wait_seconds: float = 120.0) -> Any:
    """A connection to the duckdb file. duckdb lets one process at a time open a file for writing, and here
    Airflow's tasks, dbt and Dagster's runs take turns on it: while another process holds it, wait."""
    import duckdb

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return duckdb.connect(str(duckdb_path))
        except duckdb.IOException as error:
            if "lock" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def load_csv_to_duckdb(args: LoadCsvToDuckDbArgs) -> int:
    """(Re)create ``schema.table`` from the CSV; returns the number of rows loaded."""
    args.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    columns = ", ".join(f'"{c}"' for c in args.column_names)
    with connect(args.duckdb_path) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {args.duckdb_schema}")
        con.execute(
            f"CREATE OR REPLACE TABLE {args.duckdb_schema}.{args.table_name} AS "
            f"SELECT {columns} FROM read_csv_auto(?, header=true)",
            [str(args.csv_path)],
        )
        row = con.execute(f"SELECT count(*) FROM {args.duckdb_schema}.{args.table_name}").fetchone()
    return int(row[0]) if row else 0


def export_table_to_csv(*, duckdb_path: Path, table: str, csv_path: Path) -> int:
    """Write a duckdb table to a CSV file; returns the number of rows."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with connect(duckdb_path) as con:
        con.execute(f"COPY (SELECT * FROM {table}) TO '{csv_path}' (HEADER, DELIMITER ',')")
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0

"""`airlift-airflow run-index`: the sensor's optional index on dag_run (updated_at), on a SQLite
database shaped like Airflow's (the real servers' PostgreSQL and SQLite: tests/integration)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.dialects import mysql, postgresql

from airlift_airflow.cli import main
from airlift_airflow.run_index import (
    INDEX_NAME,
    RunIndexError,
    create_run_index,
    drop_run_index,
    run_index_state,
    run_index_statements,
)

SECRET = "pw-SENTINEL-9f2"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "airflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, run_id TEXT, state TEXT, updated_at TIMESTAMP)")
        db.execute("CREATE INDEX dag_id_state ON dag_run (dag_id, state)")
    return path


def _indexes(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'dag_run'"))


def _main(path: Path, *argv: str) -> int:
    return main(["run-index", *argv], engine_factory=lambda: sqlalchemy.create_engine(f"sqlite:///{path}"))


def test_check_create_check_drop(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(database, "check") == 1
    out = capsys.readouterr().out
    assert "No index on dag_run (updated_at)" in out and str(database) in out and "run-index create" in out

    assert _main(database, "create") == 0
    out = capsys.readouterr().out
    assert f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON dag_run (updated_at)" in out
    assert _indexes(database) == [INDEX_NAME, "dag_id_state"]

    assert _main(database, "check") == 0
    assert "the sensor's reads of changed runs use it" in capsys.readouterr().out
    assert _main(database, "create") == 0  # again: nothing to do
    assert "already on dag_run" in capsys.readouterr().out
    assert _indexes(database) == [INDEX_NAME, "dag_id_state"]

    assert _main(database, "drop") == 0
    assert f"DROP INDEX IF EXISTS {INDEX_NAME}" in capsys.readouterr().out
    assert _indexes(database) == ["dag_id_state"]
    assert _main(database, "drop") == 0
    assert "nothing to drop" in capsys.readouterr().out
    assert _main(database, "check") == 1


def test_an_index_of_the_operator_on_the_same_column_serves_as_well(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(database) as db:
        db.execute("CREATE INDEX my_runs_by_update ON dag_run (updated_at, dag_id)")
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    state = run_index_state(engine)
    assert (state.exists, state.others, state.usable) == (False, ("my_runs_by_update",), True)
    assert _main(database, "check") == 0
    assert "my_runs_by_update starts with dag_run.updated_at" in capsys.readouterr().out


def test_sql_prints_the_statements_and_touches_nothing(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(database, "sql") == 0
    assert capsys.readouterr().out.splitlines() == [
        "-- create", f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} ON dag_run (updated_at);",
        "-- drop", f"DROP INDEX IF EXISTS {INDEX_NAME};",
    ]
    assert _indexes(database) == ["dag_id_state"]


def test_a_database_without_airflows_tables_says_to_migrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert _main(empty, "create") == 2
    err = capsys.readouterr().err
    assert "has no table 'dag_run'" in err and "airflow db migrate" in err and str(empty) in err
    with pytest.raises(RunIndexError, match="airflow db migrate"):
        create_run_index(sqlalchemy.create_engine(f"sqlite:///{empty}"))


def _engine(dialect: Any, url: str) -> Any:
    """Enough of an engine for the statements and the messages (no database behind it)."""
    return SimpleNamespace(dialect=dialect, url=sqlalchemy.engine.make_url(url))


def test_postgresql_builds_and_drops_concurrently_in_airflows_schema() -> None:
    engine = _engine(postgresql.dialect(), f"postgresql+psycopg2://airflow:{SECRET}@db:5432/airflow")
    assert run_index_statements(engine, "create") == [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} ON dag_run (updated_at)"]
    assert run_index_statements(engine, "drop", schema="Airflow Meta") == [
        f'DROP INDEX CONCURRENTLY IF EXISTS "Airflow Meta".{INDEX_NAME}']
    assert run_index_statements(engine, "create", schema="meta") == [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} ON meta.dag_run (updated_at)"]


def test_airflows_own_schema_is_used_without_being_repeated(monkeypatch: pytest.MonkeyPatch, database: Path) -> None:
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_SCHEMA", "meta")
    engine = _engine(postgresql.dialect(), "postgresql+psycopg2://airflow@db:5432/airflow")
    assert run_index_statements(engine, "create") == [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} ON meta.dag_run (updated_at)"]
    assert run_index_statements(engine, "drop") == [f"DROP INDEX CONCURRENTLY IF EXISTS meta.{INDEX_NAME}"]
    # SQLite has no schemas: the option is PostgreSQL's
    assert _main(database, "create") == 0 and _indexes(database) == [INDEX_NAME, "dag_id_state"]


def test_another_database_is_refused_by_name_without_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    engine = _engine(mysql.dialect(), f"mysql+mysqldb://airflow:{SECRET}@db:3306/airflow")
    with pytest.raises(RunIndexError) as caught:
        run_index_statements(engine, "create")
    assert "is mysql" in str(caught.value) and "postgresql and sqlite only" in str(caught.value)
    assert "db:3306/airflow" in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(RunIndexError):
        drop_run_index(engine)
    assert main(["run-index", "check"], engine_factory=lambda: engine) == 2
    captured = capsys.readouterr()
    assert "airlift-airflow run-index check: " in captured.err and "***" in captured.err
    assert SECRET not in captured.out + captured.err


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "airflow.db"
    assert _main(missing, "check") == 2
    err = capsys.readouterr().err
    assert "cannot read the indexes of 'dag_run'" in err and str(missing) in err and "OperationalError" in err

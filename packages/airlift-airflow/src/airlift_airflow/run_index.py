"""The index on ``dag_run (updated_at)`` that Airlift's sensor can use, built, checked and removed
from where Airflow runs.

Airflow indexes neither ``dag_run.updated_at`` nor ``end_date``, and Airflow's REST API shows a run
that ended only through ``updated_at``: without this index every sensor tick scans the runs table
(Airlift's guide, Observe, "How it works", has the measured cost). The index is not part of
Airflow's schema and the sensor's results are the same without it; it is the operator's choice.

From a shell that runs Airflow's own CLI (the same configuration, so the same metadata database)::

    airlift-airflow run-index check     # exit 0: the index is there and usable; 1: it is not
    airlift-airflow run-index create    # PostgreSQL: CREATE INDEX CONCURRENTLY (writes go on)
    airlift-airflow run-index drop
    airlift-airflow run-index sql       # the statements, for a DBA to run

PostgreSQL and SQLite are supported; an index that a PostgreSQL ``CREATE INDEX CONCURRENTLY`` left
invalid (interrupted, or it failed) is reported by ``check`` and built again by ``create``. The
database URL is shown without its password.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airlift_airflow.errors import AirliftAirflowError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["INDEX_NAME", "RunIndexError", "RunIndexState", "airflow_engine", "create_run_index", "drop_run_index",
           "main", "run_index_state", "run_index_statements"]

#: The index's name (the ``airlift_`` prefix tells whose it is in Airflow's schema).
INDEX_NAME = "airlift_dag_run_updated_at"
_TABLE, _COLUMN = "dag_run", "updated_at"
_DIALECTS = ("postgresql", "sqlite")


class RunIndexError(AirliftAirflowError):
    """The index cannot be checked, built or removed here; the message names the database (without
    its password) and what to do."""


@dataclass(frozen=True)
class RunIndexState:
    """What the metadata database holds: ``exists`` (an index named :data:`INDEX_NAME` on
    ``dag_run``), ``valid`` (PostgreSQL marks an interrupted ``CREATE INDEX CONCURRENTLY`` invalid:
    the planner never uses it) and ``others`` (other indexes of ``dag_run`` that start with
    ``updated_at``: they serve the sensor as well)."""

    exists: bool
    valid: bool
    others: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """An index the sensor's reads of changed runs can use is there."""
        return (self.exists and self.valid) or bool(self.others)


def airflow_engine() -> Engine:
    """The SQLAlchemy engine of Airflow's metadata database, as Airflow's own CLI configures it
    (``[database] sql_alchemy_conn``, its ``_cmd`` and ``_secret`` forms included)."""
    from airflow import settings

    engine = getattr(settings, "engine", None)
    if engine is None:
        settings.configure_orm()  # type: ignore[no-untyped-call]
        engine = settings.engine
    if engine is None:
        raise RunIndexError("Airflow's metadata database is not configured in this process; run the command where "
                            "Airflow's CLI runs (`airflow db check` works there).")
    return engine


def _schema() -> str | None:
    from airflow.configuration import conf

    schema = conf.get("database", "sql_alchemy_schema", fallback="") or ""
    return schema.strip() or None


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _dialect(engine: Engine) -> str:
    name = engine.dialect.name
    if name not in _DIALECTS:
        raise RunIndexError(
            f"Airflow's metadata database {_where(engine)} is {name}; `airlift-airflow run-index` builds the index on "
            f"{' and '.join(_DIALECTS)} only. The sensor works the same without it (it scans the runs table)."
        )
    return name


def run_index_statements(engine: Engine, action: str, *, schema: str | None = None) -> list[str]:
    """The SQL of ``action`` (``create`` or ``drop``) on this engine's database, quoted for it."""
    dialect = _dialect(engine)
    quote = engine.dialect.identifier_preparer.quote
    prefix = f"{quote(schema)}." if schema and dialect == "postgresql" else ""  # Airflow's schema option is PostgreSQL's
    table, index = f"{prefix}{quote(_TABLE)}", f"{prefix}{quote(INDEX_NAME)}"
    concurrently = " CONCURRENTLY" if dialect == "postgresql" else ""
    if action == "create":
        return [f"CREATE INDEX{concurrently} IF NOT EXISTS {quote(INDEX_NAME)} ON {table} ({quote(_COLUMN)})"]
    if action == "drop":
        return [f"DROP INDEX{concurrently} IF EXISTS {index}"]
    raise ValueError(f"unknown action {action!r}; use create or drop")


def run_index_state(engine: Engine, *, schema: str | None = None) -> RunIndexState:
    """Whether the index is there and usable (see :class:`RunIndexState`)."""
    import sqlalchemy

    dialect = _dialect(engine)
    schema = schema if dialect == "postgresql" else None
    try:
        with engine.connect() as conn:
            indexes = sqlalchemy.inspect(conn).get_indexes(_TABLE, schema=schema)
            exists = any(i["name"] == INDEX_NAME for i in indexes)
            others = tuple(sorted(str(i["name"]) for i in indexes if i["name"] != INDEX_NAME and i["column_names"][:1] == [_COLUMN]))
            valid = exists
            if exists and dialect == "postgresql":
                qualified = f"{schema}.{INDEX_NAME}" if schema else INDEX_NAME
                row = conn.execute(sqlalchemy.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
                                   {"name": qualified}).first()
                valid = bool(row and row[0])
    except sqlalchemy.exc.NoSuchTableError:
        raise RunIndexError(f"Airflow's metadata database {_where(engine)} has no table {_TABLE!r}"
                            f"{f' in schema {schema!r}' if schema else ''}: run `airflow db migrate` first.") from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise RunIndexError(f"cannot read the indexes of {_TABLE!r} in {_where(engine)}: {type(e).__name__}: "
                            f"{getattr(e, 'orig', None) or e}") from None
    return RunIndexState(exists=exists, valid=valid, others=others)


def _execute(engine: Engine, statements: Sequence[str], say: Callable[[str], None]) -> None:
    import sqlalchemy

    # CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction block
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in statements:
            say(f"  {statement}")
            try:
                conn.exec_driver_sql(statement)
            except sqlalchemy.exc.SQLAlchemyError as e:
                raise RunIndexError(f"{statement!r} failed on {_where(engine)}: {type(e).__name__}: "
                                    f"{getattr(e, 'orig', None) or e}") from None


def create_run_index(engine: Engine | None = None, *, schema: str | None = None,
                     say: Callable[[str], None] = lambda _: None) -> RunIndexState:
    """Build the index unless a usable one is there (an invalid leftover is dropped and built again);
    returns the state after. PostgreSQL builds it ``CONCURRENTLY``: Airflow keeps writing while it
    waits for the transactions open on ``dag_run`` and reads the table once."""
    engine = engine or airflow_engine()
    state = run_index_state(engine, schema=schema)
    if state.exists and state.valid:
        say(f"{INDEX_NAME} is already on {_TABLE} in {_where(engine)}.")
        return state
    if state.exists:  # an interrupted CREATE INDEX CONCURRENTLY: IF NOT EXISTS would keep it
        say(f"{INDEX_NAME} in {_where(engine)} is invalid (an interrupted build); dropping it to build it again:")
        _execute(engine, run_index_statements(engine, "drop", schema=schema), say)
    say(f"Building {INDEX_NAME} on {_TABLE} ({_COLUMN}) in {_where(engine)}:")
    try:
        _execute(engine, run_index_statements(engine, "create", schema=schema), say)
    except RunIndexError:
        if run_index_state(engine, schema=schema).exists:  # what a failed concurrent build leaves
            _execute(engine, run_index_statements(engine, "drop", schema=schema), say)
        raise
    after = run_index_state(engine, schema=schema)
    if not (after.exists and after.valid):
        raise RunIndexError(f"{INDEX_NAME} was built in {_where(engine)} but is not {'valid' if after.exists else 'there'}; "
                            "run `airlift-airflow run-index create` again.")
    return after


def drop_run_index(engine: Engine | None = None, *, schema: str | None = None,
                   say: Callable[[str], None] = lambda _: None) -> RunIndexState:
    """Remove the index if it is there; returns the state after."""
    engine = engine or airflow_engine()
    if not run_index_state(engine, schema=schema).exists:
        say(f"{INDEX_NAME} is not on {_TABLE} in {_where(engine)}: nothing to drop.")
    else:
        say(f"Dropping {INDEX_NAME} from {_where(engine)}:")
        _execute(engine, run_index_statements(engine, "drop", schema=schema), say)
    return run_index_state(engine, schema=schema)


def _check(engine: Engine, schema: str | None, say: Callable[[str], None]) -> int:
    state = run_index_state(engine, schema=schema)
    where = _where(engine)
    if state.exists and state.valid:
        say(f"{INDEX_NAME} is on {_TABLE} ({_COLUMN}) in {where}: the sensor's reads of changed runs use it.")
    elif state.exists:
        say(f"{INDEX_NAME} in {where} is INVALID (an interrupted CREATE INDEX CONCURRENTLY); PostgreSQL does not use it. "
            "Run `airlift-airflow run-index create` to build it again.")
    elif state.others:
        say(f"{INDEX_NAME} is not in {where}, but {', '.join(state.others)} starts with {_TABLE}.{_COLUMN} and serves "
            "the sensor the same way.")
    else:
        say(f"No index on {_TABLE} ({_COLUMN}) in {where}: each sensor tick scans {_TABLE}. "
            "`airlift-airflow run-index create` builds one.")
    return 0 if state.usable else 1


def main(argv: Sequence[str] | None = None, *, engine_factory: Callable[[], Any] = airflow_engine) -> int:
    """``airlift-airflow``: the command line of airlift-airflow (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="airlift-airflow", description="airlift-airflow's commands, run where Airflow runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("run-index", help=f"the optional index {INDEX_NAME} on dag_run (updated_at) for Airlift's sensor",
                                description=f"Build, check or drop {INDEX_NAME}: Airflow does not index dag_run.updated_at, so "
                                            "without it each sensor tick scans the runs table. Not part of Airflow's schema; the "
                                            "sensor's results are the same without it. Run where Airflow's CLI runs (same "
                                            "configuration, same metadata database).")
    index.add_argument("action", choices=["check", "create", "drop", "sql"],
                       help="check: exit 0 when a usable index is there, 1 when not; sql: print the statements only")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        engine = engine_factory()
        schema = _schema()
        if args.action == "check":
            return _check(engine, schema, say)
        if args.action == "sql":
            for action in ("create", "drop"):
                say(f"-- {action}")
                for statement in run_index_statements(engine, action, schema=schema):
                    say(f"{statement};")
            return 0
        (create_run_index if args.action == "create" else drop_run_index)(engine, schema=schema, say=say)
        return 0
    except RunIndexError as e:
        print(f"airlift-airflow run-index {args.action}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airlift_airflow.errors import AirliftAirflowError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["INDEX_NAME", "RunIndexError", "RunIndexState", "airflow_engine", "airflow_schema", "create_run_index",
           "describe", "drop_run_index", "run_index_state", "run_index_statements"]

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


def airflow_schema() -> str | None:
    """Airflow's ``[database] sql_alchemy_schema`` (``None``: the default schema)."""
    from airflow.configuration import conf

    schema = conf.get("database", "sql_alchemy_schema", fallback="") or ""
    return schema.strip() or None


def describe(engine: Engine) -> str:
    """The database's URL without its password."""
    return engine.url.render_as_string(hide_password=True)


def _dialect(engine: Engine) -> str:
    name = engine.dialect.name
    if name not in _DIALECTS:
        raise RunIndexError(
            f"Airflow's metadata database {describe(engine)} is {name}; `airlift-airflow run-index` builds the index on "
            f"{' and '.join(_DIALECTS)} only. The sensor works the same without it (it scans the runs table)."
        )
    return name


def run_index_statements(engine: Engine, action: str, *, schema: str | None = None) -> list[str]:
    """The SQL of ``action`` (``create`` or ``drop``) on this engine's database, quoted for it, in
    ``schema`` (Airflow's by default; PostgreSQL only)."""
    dialect = _dialect(engine)
    quote = engine.dialect.identifier_preparer.quote
    schema = _schema_of(engine, schema)
    prefix = f"{quote(schema)}." if schema else ""
    table, index = f"{prefix}{quote(_TABLE)}", f"{prefix}{quote(INDEX_NAME)}"
    concurrently = " CONCURRENTLY" if dialect == "postgresql" else ""
    if action == "create":
        return [f"CREATE INDEX{concurrently} IF NOT EXISTS {quote(INDEX_NAME)} ON {table} ({quote(_COLUMN)})"]
    if action == "drop":
        return [f"DROP INDEX{concurrently} IF EXISTS {index}"]
    raise ValueError(f"unknown action {action!r}; use create or drop")


def _schema_of(engine: Engine, schema: str | None) -> str | None:
    """``schema``, else Airflow's own (``[database] sql_alchemy_schema``), on PostgreSQL; ``None`` elsewhere."""
    return (schema or airflow_schema()) if _dialect(engine) == "postgresql" else None


def run_index_state(engine: Engine, *, schema: str | None = None) -> RunIndexState:
    """Whether the index is there and usable (see :class:`RunIndexState`); ``schema``: Airflow's by default."""
    import sqlalchemy

    dialect = _dialect(engine)
    schema = _schema_of(engine, schema)
    try:
        with engine.connect() as conn:
            inspector = sqlalchemy.inspect(conn)
            if not inspector.has_table(_TABLE, schema=schema):  # SQLAlchemy 1.4 lists no indexes of a missing table
                raise sqlalchemy.exc.NoSuchTableError(_TABLE)
            indexes = inspector.get_indexes(_TABLE, schema=schema)
            exists = any(i["name"] == INDEX_NAME for i in indexes)
            others = tuple(sorted(str(i["name"]) for i in indexes if i["name"] != INDEX_NAME and i["column_names"][:1] == [_COLUMN]))
            valid = exists
            if exists and dialect == "postgresql":
                quote = engine.dialect.identifier_preparer.quote
                qualified = f"{quote(schema)}.{quote(INDEX_NAME)}" if schema else quote(INDEX_NAME)
                row = conn.execute(sqlalchemy.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
                                   {"name": qualified}).first()
                valid = bool(row and row[0])
    except sqlalchemy.exc.NoSuchTableError:
        raise RunIndexError(f"Airflow's metadata database {describe(engine)} has no table {_TABLE!r}"
                            f"{f' in schema {schema!r}' if schema else ''}: run `airflow db migrate` first.") from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise RunIndexError(f"cannot read the indexes of {_TABLE!r} in {describe(engine)}: {type(e).__name__}: "
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
                raise RunIndexError(f"{statement!r} failed on {describe(engine)}: {type(e).__name__}: "
                                    f"{getattr(e, 'orig', None) or e}") from None


def create_run_index(engine: Engine | None = None, *, schema: str | None = None,
                     say: Callable[[str], None] = lambda _: None) -> RunIndexState:
    """Build the index unless a usable one is there (an invalid leftover is dropped and built again),
    in ``schema`` (Airflow's by default); returns the state after. PostgreSQL builds it ``CONCURRENTLY``: Airflow keeps writing while it
    waits for the transactions open on ``dag_run`` and reads the table once."""
    engine = engine or airflow_engine()
    schema = _schema_of(engine, schema)
    state = run_index_state(engine, schema=schema)
    if state.exists and state.valid:
        say(f"{INDEX_NAME} is already on {_TABLE} in {describe(engine)}.")
        return state
    if state.exists:  # an interrupted CREATE INDEX CONCURRENTLY: IF NOT EXISTS would keep it
        say(f"{INDEX_NAME} in {describe(engine)} is invalid (an interrupted build); dropping it to build it again:")
        _execute(engine, run_index_statements(engine, "drop", schema=schema), say)
    say(f"Building {INDEX_NAME} on {_TABLE} ({_COLUMN}) in {describe(engine)}:")
    try:
        _execute(engine, run_index_statements(engine, "create", schema=schema), say)
    except RunIndexError:
        if run_index_state(engine, schema=schema).exists:  # what a failed concurrent build leaves
            _execute(engine, run_index_statements(engine, "drop", schema=schema), say)
        raise
    after = run_index_state(engine, schema=schema)
    if not (after.exists and after.valid):
        raise RunIndexError(f"{INDEX_NAME} was built in {describe(engine)} but is not {'valid' if after.exists else 'there'}; "
                            "run `airlift-airflow run-index create` again.")
    return after


def drop_run_index(engine: Engine | None = None, *, schema: str | None = None,
                   say: Callable[[str], None] = lambda _: None) -> RunIndexState:
    """Remove the index if it is there (in ``schema``, Airflow's by default); returns the state after."""
    engine = engine or airflow_engine()
    schema = _schema_of(engine, schema)
    if not run_index_state(engine, schema=schema).exists:
        say(f"{INDEX_NAME} is not on {_TABLE} in {describe(engine)}: nothing to drop.")
    else:
        say(f"Dropping {INDEX_NAME} from {describe(engine)}:")
        _execute(engine, run_index_statements(engine, "drop", schema=schema), say)
    return run_index_state(engine, schema=schema)

"""``airlift-airflow``: the command line of airlift-airflow, run where Airflow runs (it reads Airflow's
configuration). The only module of the package that prints: the rest runs inside Airflow and logs.

    airlift-airflow run-index check|create|drop|sql   # see airlift_airflow.run_index
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from airlift_airflow.run_index import (
    INDEX_NAME,
    RunIndexError,
    airflow_engine,
    create_run_index,
    describe,
    drop_run_index,
    run_index_state,
    run_index_statements,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["main"]


def _say(line: str) -> None:
    print(line, flush=True)


def _check(engine: Engine) -> int:
    state = run_index_state(engine)
    where = describe(engine)
    if state.exists and state.valid:
        _say(f"{INDEX_NAME} is on dag_run (updated_at) in {where}: the sensor's reads of changed runs use it.")
    elif state.exists:
        _say(f"{INDEX_NAME} in {where} is INVALID (an interrupted CREATE INDEX CONCURRENTLY); PostgreSQL does not use it. "
             "Run `airlift-airflow run-index create` to build it again.")
    elif state.others:
        _say(f"{INDEX_NAME} is not in {where}, but {', '.join(state.others)} starts with dag_run.updated_at and serves "
             "the sensor the same way.")
    else:
        _say(f"No index on dag_run (updated_at) in {where}: each sensor tick scans dag_run. "
             "`airlift-airflow run-index create` builds one.")
    return 0 if state.usable else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlift-airflow", description="airlift-airflow's commands, run where Airflow runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser(
        "run-index", help=f"the optional index {INDEX_NAME} on dag_run (updated_at) for Airlift's sensor",
        description=f"Build, check or drop {INDEX_NAME}: Airflow does not index dag_run.updated_at, so without it each "
                    "sensor tick scans the runs table. Not part of Airflow's schema; the sensor's results are the same "
                    "without it. Run where Airflow's CLI runs (same configuration, same metadata database).",
    )
    index.add_argument("action", choices=["check", "create", "drop", "sql"],
                       help="check: exit 0 when a usable index is there, 1 when not; sql: print the statements only")
    return parser


def main(argv: Sequence[str] | None = None, *, engine_factory: Callable[[], Engine] = airflow_engine) -> int:
    """Run the command; the exit code (2: the database could not be read or changed, said on stderr)."""
    args = _parser().parse_args(argv)
    try:
        engine = engine_factory()
        if args.action == "check":
            return _check(engine)
        if args.action == "sql":
            for action in ("create", "drop"):
                _say(f"-- {action}")
                for statement in run_index_statements(engine, action):
                    _say(f"{statement};")
            return 0
        (create_run_index if args.action == "create" else drop_run_index)(engine, say=_say)
        return 0
    except RunIndexError as e:
        print(f"airlift-airflow {args.command} {args.action}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

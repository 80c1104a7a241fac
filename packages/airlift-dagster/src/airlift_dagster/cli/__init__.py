"""The ``airlift`` command line: check connectivity, scaffold and edit migration-state files, compare
them with what Airflow runs.

>>> from click.testing import CliRunner
>>> from airlift_dagster.cli import cli
>>> CliRunner().invoke(cli, ["--help"]).exit_code
0
"""

from __future__ import annotations

from airlift_dagster.cli._errors import EXIT_ERROR, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, CliError
from airlift_dagster.cli.main import cli, main

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "CliError", "cli", "main"]

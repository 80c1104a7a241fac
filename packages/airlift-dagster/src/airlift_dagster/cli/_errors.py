"""The command line's error and exit codes."""

from __future__ import annotations

from airlift_dagster.errors import AirliftDagsterError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "CliError"]

#: Everything checked is fine.
EXIT_OK = 0
#: The command ran and found problems (``doctor`` FAIL lines, ``validate`` errors, ``diff`` changes with
#: ``--exit-code``).
EXIT_PROBLEMS = 1
#: Bad usage (unknown option, missing argument): Click's own code.
EXIT_USAGE = 2
#: The command could not run: Airflow unreachable or refusing the credentials, an unreadable state
#: file, an unknown DAG or task. Nothing was written.
EXIT_ERROR = 3


class CliError(AirliftDagsterError):
    """A problem the command line reports in one line (and exits with :data:`EXIT_ERROR`)."""

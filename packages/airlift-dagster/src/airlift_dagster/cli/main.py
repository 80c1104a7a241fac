"""The ``airlift`` group and the error handling every command shares."""

from __future__ import annotations

import logging
from typing import Any

import click

from airlift_client import AirliftClientError
from airlift_dagster.cli._errors import EXIT_ERROR
from airlift_dagster.cli._output import Output, first_line
from airlift_dagster.cli.decommission import decommission
from airlift_dagster.cli.doctor import doctor
from airlift_dagster.cli.state import state
from airlift_dagster.errors import AirliftDagsterError
from airlift_dagster.version import __version__
from airlift_protocol import AirliftProtocolError

__all__ = ["cli", "main"]


class _Group(click.Group):
    """Turns Airlift's errors into one line on stderr and exit code 3."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AirliftClientError, AirliftProtocolError, AirliftDagsterError) as e:
            Output().error(first_line(e))
            ctx.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="airlift")
def cli() -> None:
    """Airlift: move an Airflow deployment to Dagster one task at a time.

    Connection options (on every command that talks to Airflow) also come from environment
    variables: AIRLIFT_AIRFLOW_URL, AIRLIFT_AIRFLOW_AUTH (basic|token|mwaa), AIRLIFT_AIRFLOW_USERNAME,
    AIRLIFT_AIRFLOW_PASSWORD, AIRLIFT_AIRFLOW_TOKEN, AIRLIFT_MWAA_ENV, AIRLIFT_DEFS, AIRLIFT_DAGSTER_URL,
    AIRLIFT_DAGSTER_API_TOKEN (Dagster+).

    \b
    Exit codes: 0 fine; 1 problems found (doctor FAIL, validate errors, diff --exit-code);
    2 bad usage; 3 could not run (Airflow unreachable, credentials refused, bad state file,
    unknown DAG or task): nothing was written.
    """
    # The client logs each retry; here the final error is reported once, in one line.
    logging.getLogger("airlift_client").addHandler(logging.NullHandler())


cli.add_command(doctor)
cli.add_command(state)
cli.add_command(decommission)


def main() -> None:
    """Entry point of the ``airlift`` console script."""
    cli(prog_name="airlift")

"""Errors of airlift-airflow: one base class, narrow subclasses.

>>> from airlift_airflow import AirliftAirflowError, DagsterRunFailedError
>>> issubclass(DagsterRunFailedError, AirliftAirflowError)
True
"""

from __future__ import annotations

__all__ = [
    "AirliftAirflowError",
    "AirliftMigrationError",
    "DagsterApiError",
    "DagsterLaunchUnknownError",
    "DagsterRunFailedError",
    "DagsterUnreachableError",
]


class AirliftAirflowError(Exception):
    """Base of every error airlift-airflow raises.

    >>> try:
    ...     raise DagsterApiError("Dagster at http://dagster:3000/graphql answered HTTP 400")
    ... except AirliftAirflowError as e:
    ...     print(e)
    Dagster at http://dagster:3000/graphql answered HTTP 400
    """


class AirliftMigrationError(AirliftAirflowError, ValueError):
    """The migration state does not match the DAG file; raised while Airflow parses the file, so it
    shows as an import error of that file. The message names the file, the DAG and the task ids.

    >>> str(AirliftMigrationError("/dags/x.py: the migration state of DAG 'x' names task(s) ['nope']"))
    "/dags/x.py: the migration state of DAG 'x' names task(s) ['nope']"
    """


class DagsterApiError(AirliftAirflowError):
    """Dagster's GraphQL API answered with an error, or has nothing to run for a task; the message
    names the Dagster URL (never the API token).

    >>> DagsterApiError("no Dagster assets are tagged for Airflow task d.t at http://dagster:3000").args[0][:9]
    'no Dagste'
    """


class DagsterUnreachableError(DagsterApiError):
    """Dagster could not be reached after the allowed attempts (connection errors, timeouts, 5xx).

    >>> issubclass(DagsterUnreachableError, DagsterApiError)
    True
    """


class DagsterRunFailedError(AirliftAirflowError):
    """The Dagster run of a migrated task failed or was canceled; the message carries the run's link
    and the error Dagster reported.

    >>> str(DagsterRunFailedError("Dagster run FAILURE: http://dagster:3000/runs/abc"))
    'Dagster run FAILURE: http://dagster:3000/runs/abc'
    """


class DagsterLaunchUnknownError(DagsterApiError):
    """A launch got no usable answer (timeout, dropped connection, 5xx): the run may or may not exist.
    :class:`~airlift_airflow.DagsterHook` resolves it by looking the run up by its tags before
    launching again; the mutation itself is never retried blindly.

    ``sent`` is ``False`` when the request never left (connection refused, connect timeout): Dagster
    cannot have created the run, so there is nothing to look up.

    >>> issubclass(DagsterLaunchUnknownError, DagsterApiError)
    True
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent

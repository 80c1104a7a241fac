"""Errors raised by airlift-client. Every error derives from :class:`AirliftClientError`; none of
them ever contains a password, token or cookie."""

from __future__ import annotations

__all__ = [
    "AirflowAuthError",
    "AirflowLoginPageError",
    "AirflowNotFoundError",
    "AirflowResponseError",
    "AirflowRunTimeoutError",
    "AirflowUnreachableError",
    "AirliftClientError",
]


class AirliftClientError(Exception):
    """Base class of every airlift-client error."""


class AirflowUnreachableError(AirliftClientError):
    """The Airflow webserver could not be reached (connection refused, DNS, timeouts) after retries."""


class AirflowResponseError(AirliftClientError):
    """Airflow answered with an unexpected status or body. ``status`` holds the HTTP status."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AirflowAuthError(AirflowResponseError):
    """Airflow refused the credentials (401/403); the message names the backend and URL."""


class AirflowNotFoundError(AirflowResponseError):
    """A DAG, run or other object does not exist (404); the message names it."""


class AirflowLoginPageError(AirflowAuthError):
    """Airflow answered with an HTML login page instead of JSON: the API's auth is not set up for
    this backend. The message says what to configure."""


class AirflowRunTimeoutError(AirliftClientError):
    """A DAG run did not finish within the time given to ``wait_for_run``."""

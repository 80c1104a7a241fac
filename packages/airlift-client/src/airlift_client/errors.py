"""Errors raised by airlift-client. Every error derives from :class:`AirliftClientError`; none of
them ever contains a password, token or cookie.

Errors about one request carry what is known about it: ``method``, ``url``, ``status`` (the last
HTTP status, ``None`` when no answer came) and ``attempts`` (how many times it was sent).

>>> error = AirflowBadResponseError("GET http://airflow/api/v2/dags answered ...", method="GET", url="http://airflow/api/v2/dags", status=200, attempts=5)
>>> (error.method, error.status, error.attempts)
('GET', 200, 5)
"""

from __future__ import annotations

__all__ = [
    "AirflowAuthError",
    "AirflowBadResponseError",
    "AirflowLoginPageError",
    "AirflowNotFoundError",
    "AirflowResponseError",
    "AirflowRunTimeoutError",
    "AirflowUnreachableError",
    "AirliftClientError",
    "AuditLogForbiddenError",
    "AuditLogUnavailableError",
]


class AirliftClientError(Exception):
    """Base class of every airlift-client error."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.attempts = attempts


class AirflowUnreachableError(AirliftClientError):
    """The Airflow webserver could not be reached (connection refused or reset, DNS, timeouts, a
    connection closed mid-answer) after retries; the message gives the URL and the attempt count."""


class AirflowResponseError(AirliftClientError):
    """Airflow answered with an unexpected status or body. ``status`` holds the HTTP status."""


class AirflowBadResponseError(AirflowResponseError):
    """Airflow answered with a body the client cannot use: not JSON, truncated JSON, or JSON whose
    fields do not match the REST API's model. The message names the method, URL, status, the DAG or
    run when known, and a short excerpt of the body (secrets removed)."""


class AirflowAuthError(AirflowResponseError):
    """Airflow refused the credentials (401/403); the message names the backend and URL."""


class AuditLogUnavailableError(AirflowResponseError):
    """This Airflow cannot serve its audit log by time window and run (Airflow 2 before 2.9), or
    this user may not read it (:class:`AuditLogForbiddenError`); the message says what to do."""


class AuditLogForbiddenError(AirflowAuthError, AuditLogUnavailableError):
    """The user may not read the audit log (HTTP 403); the message names the permission to grant."""


class AirflowNotFoundError(AirflowResponseError):
    """A DAG, run or other object does not exist (404); the message names it."""


class AirflowLoginPageError(AirflowAuthError):
    """Airflow answered with an HTML login page instead of JSON: the API's auth is not set up for
    this backend. The message says what to configure."""


class AirflowRunTimeoutError(AirliftClientError):
    """A DAG run did not finish within the time given to ``wait_for_run``."""
